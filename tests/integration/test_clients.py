"""The streamer and reader unchanged on a real 3-node Redis Cluster (ElastiCache Serverless mode)."""

import asyncio
from typing import Any

import redis as sync_redis

from buildlogs.clients import create_redis
from buildlogs.keys import logs_key, meta_key
from buildlogs.settings import Settings
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer
from tests.support.redis_servers import RedisServer


async def test_streaming_and_reading_work_on_a_cluster(cluster: list[RedisServer]) -> None:
    # GIVEN the one connection factory configured for cluster mode
    settings = Settings(redis_url=f"redis://127.0.0.1:{cluster[0].port}", redis_cluster=True)
    client = create_redis(settings)
    assert type(client).__name__ == "RedisCluster"
    builds = [f"cluster-{i}" for i in range(6)]  # enough ids to land on several nodes
    try:
        # WHEN several builds stream (with trimming, which uses the meta hash) and readers long-poll,
        # each writer and reader with a client of its own, as each is its own Lambda invocation (one
        # client shared by a dozen concurrent tasks races redis-py's cluster reconnects: a connection
        # can lose its writer mid-handshake, about once in eight runs)
        async def build(build_id: str) -> list[str]:
            reader_client, writer_client = create_redis(settings), create_redis(settings)
            try:
                return await stream_and_follow(build_id, LogReader(reader_client), writer_client)
            finally:
                await reader_client.aclose()
                await writer_client.aclose()

        async def stream_and_follow(build_id: str, reader: LogReader, writer_client: Any) -> list[str]:
            waiting = asyncio.create_task(reader.read(build_id, wait_ms=5000))
            streamer = LogStreamer(writer_client, build_id, "install", maxlen=100, flush_lines=50)
            await streamer.stage("install")
            await streamer.on_stdout("".join(f"{build_id} {i}\n" for i in range(500)))
            await streamer.close()
            await writer_client.xadd(
                logs_key(build_id),
                {
                    "ts": 1,
                    "source": "system",
                    "phase": "install",
                    "text": "BUILD SUCCEEDED",
                    "event": "end",
                    "status": "SUCCEEDED",
                },
            )
            first = await waiting
            assert first.entries, "the long-poll returned nothing"
            page = await reader.read(build_id, limit=1000)
            assert page.done
            assert page.entries[-1].event == "end"
            return [e.text for e in page.entries]

        results = await asyncio.gather(*(build(b) for b in builds))
    finally:
        await client.aclose()
    # THEN each build's newest lines and its single trimming notice are there
    for build_id, texts in zip(builds, results, strict=True):
        assert f"{build_id} 499" in texts
        assert sum("log truncated" in t for t in texts) == 1
    # AND a build's keys share one hash slot, while the builds are spread over several nodes
    node = sync_redis.Redis(host="127.0.0.1", port=cluster[0].port)
    slots = {b: node.cluster("keyslot", logs_key(b)) for b in builds}
    assert all(node.cluster("keyslot", meta_key(b)) == slots[b] for b in builds)
    owners = set()
    for build_id in builds:
        for server in cluster:
            if sync_redis.Redis(host="127.0.0.1", port=server.port).cluster("countkeysinslot", slots[build_id]):
                owners.add(server.port)
    assert len(owners) >= 2

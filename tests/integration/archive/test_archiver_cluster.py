"""archive_logs unchanged on a real 3-node Redis Cluster (ElastiCache Serverless mode)."""

import asyncio
from typing import Any

from buildlogs.archive.archiver import archive_logs
from buildlogs.clients import create_redis
from buildlogs.keys import logs_key, meta_key
from buildlogs.settings import Settings
from buildlogs.stream.entries import entry_record
from tests.support.archive import BUCKET, LockingS3, archived_records
from tests.support.redis_servers import RedisServer


async def test_archive_on_a_cluster_writes_one_end_per_build(cluster: list[RedisServer], s3: Any) -> None:
    # GIVEN the one connection factory in cluster mode and builds whose keys land on several nodes
    client = create_redis(Settings(redis_url=f"redis://127.0.0.1:{cluster[0].port}", redis_cluster=True))
    builds = [f"cluster-archive-{i}" for i in range(6)]
    try:
        for build_id in builds:
            for index in range(30):
                await client.xadd(
                    logs_key(build_id), {"ts": index, "source": "stdout", "phase": "build", "text": f"{index}"}
                )
            await client.hset(meta_key(build_id), "sandbox_id", f"sbx-{build_id}")

        # WHEN each build is archived twice at once (event and sweep racing: WATCH/MULTI per slot;
        # each S3 call atomic, as real S3's are: moto's concurrent PUTs of one key are not)
        shared = LockingS3(s3)
        results = await asyncio.gather(
            *(
                archive_logs(client, shared, BUCKET, b, "ABORTED", kill_sandbox=_no_kill, ttl_seconds=60)
                for b in builds * 2
            )
        )

        # THEN every archive is the whole stream with exactly one BUILD line and one end entry
        for build_id in builds:
            stream = [entry_record(i, f) for i, f in await client.xrange(logs_key(build_id))]
            archived = archived_records(s3, build_id)
            assert archived == stream
            assert [r.get("event") for r in archived].count("end") == 1
            assert [r["text"] for r in archived].count("BUILD ABORTED") == 1
            assert 0 < await client.ttl(meta_key(build_id)) <= 60
        assert all(result is not None and result.lines == 32 for result in results)
    finally:
        for build_id in builds:
            await client.delete(logs_key(build_id))
            await client.delete(meta_key(build_id))
        await client.aclose()


async def _no_kill(_sandbox_id: str) -> None:
    return None

"""Throughput of LogStreamer vs raw pipelined XADD with the same client, in the same run.

200,000 lines of 80 bytes, fed to LogStreamer as 4 KiB chunks, against the same lines sent as
raw XADD pipelines of the same batch size (redis.asyncio, hiredis if installed). Runs each side
three times, alternating, and prints medians and the ratio (target: >= 0.7).
"""

import asyncio
import time
import uuid

import hiredis  # noqa: F401  (the parser the Lambda layer ships; fail loudly if missing)
from redis.asyncio import Redis

from bench.common import REDIS_URL, median
from buildlogs.keys import logs_key
from buildlogs.stream.streamer import LogStreamer

LINES = 200_000
LINE_BYTES = 80
BATCH = 500
ROUNDS = 3


def make_lines() -> list[str]:
    return [f"{i:08d} " + "x" * (LINE_BYTES - 10) for i in range(LINES)]  # 79 chars + newline = 80 bytes


async def raw_xadd(redis: Redis, lines: list[str]) -> float:
    key = logs_key(f"bench-raw-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    for offset in range(0, len(lines), BATCH):
        pipe = redis.pipeline(transaction=False)
        ts = time.time_ns() // 1_000_000
        for text in lines[offset : offset + BATCH]:
            pipe.xadd(key, {"ts": ts, "source": "stdout", "phase": "build", "text": text})
        await pipe.execute()
    elapsed = time.perf_counter() - start
    assert await redis.xlen(key) == len(lines)
    await redis.delete(key)
    return elapsed


async def through_streamer(redis: Redis, chunks: list[str]) -> float:
    build_id = f"bench-streamer-{uuid.uuid4().hex[:8]}"
    streamer = LogStreamer(redis, build_id, "build", flush_lines=BATCH, maxlen=10 * LINES)
    start = time.perf_counter()
    for chunk in chunks:
        await streamer.on_stdout(chunk)
    await streamer.flush(check_trim=False)
    elapsed = time.perf_counter() - start
    assert await redis.xlen(logs_key(build_id)) == LINES, "lines were lost"
    await redis.delete(logs_key(build_id))
    return elapsed


async def main() -> None:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    lines = make_lines()
    payload = "".join(f"{line}\n" for line in lines)
    chunks = [payload[i : i + 4096] for i in range(0, len(payload), 4096)]
    raw, streamed = [], []
    await raw_xadd(redis, lines[:20_000])  # warm up connections and the server
    for _ in range(ROUNDS):
        raw.append(await raw_xadd(redis, lines))
        streamed.append(await through_streamer(redis, chunks))
    await redis.aclose()
    mb = LINES * LINE_BYTES / 1e6
    raw_rate, streamer_rate = LINES / median(raw), LINES / median(streamed)
    print(f"stream_throughput: {LINES:,} lines x {LINE_BYTES} B, 4 KiB chunks, batches of {BATCH}, {REDIS_URL}")
    for name, rate, times in (("raw pipelined XADD", raw_rate, raw), ("LogStreamer", streamer_rate, streamed)):
        print(f"  {name:<19}: {rate:10,.0f} lines/s  {mb / median(times):6.2f} MB/s  (median of {ROUNDS})")
    print(f"  ratio streamer/raw : {streamer_rate / raw_rate:.2f}  (target >= 0.70)")


if __name__ == "__main__":
    asyncio.run(main())

"""Delay from a line's emission to its receipt by a live reader in another process.

A writer streams through LogStreamer at 1,000 and at 20,000 lines/s (default settings: batches
of 500 or 5 ms); a reader process follows with LogReader long-poll. Each line carries its
emission time; the reader prints p50/p99/max of receipt - emission (target: p99 <= 10 ms).
"""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from bench.common import REDIS_URL, median, percentile
from buildlogs.keys import logs_key
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer

SECONDS = 3.0
RATES = (1_000, 20_000)
RUNS = 3  # per rate; the figures are the medians of the runs (this machine is noisy)
TICK_S = 0.001  # the writer emits every millisecond: rate/1000 lines per tick


async def write(build_id: str, rate: int) -> int:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    streamer = LogStreamer(redis, build_id, "build")
    per_tick, total = max(1, rate // 1000), int(rate * SECONDS)
    sent, start = 0, time.perf_counter()
    while sent < total:
        due = start + (sent / rate)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.time_ns()
        count = min(per_tick, total - sent)
        await streamer.on_stdout("".join(f"{now} {sent + i} payload-{'x' * 40}\n" for i in range(count)))
        sent += count
    await streamer.close()
    await streamer.write_event("done", event="end", status="SUCCEEDED")
    await redis.aclose()
    return sent


async def read(build_id: str) -> list[float]:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    reader, cursor, delays = LogReader(redis), "0-0", []
    await redis.ping()
    print("ready", flush=True)  # the writer starts once the reader is connected
    while True:
        page = await reader.read(build_id, after=cursor, limit=1000, wait_ms=2000)
        received = time.time_ns()
        delays += [(received - int(e.text.split(" ", 1)[0])) / 1e6 for e in page.entries if e.source == "stdout"]
        cursor = page.next
        if page.done:
            await redis.aclose()
            return delays


def run_rate(rate: int) -> dict[str, float]:
    build_id = f"bench-latency-{uuid.uuid4().hex[:8]}"
    reader = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_latency", "--reader", build_id],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    sent = asyncio.run(write(build_id, rate))
    out, _ = reader.communicate(timeout=60)
    delays = json.loads(out)
    assert len(delays) == sent, f"reader got {len(delays)} of {sent} lines"

    async def cleanup() -> None:
        redis = Redis.from_url(REDIS_URL)
        await redis.delete(logs_key(build_id))
        await redis.aclose()

    asyncio.run(cleanup())
    return {"p50": median(delays), "p99": percentile(delays, 99), "max": max(delays), "n": len(delays)}


def main() -> None:
    if sys.argv[1:2] == ["--reader"]:
        print(json.dumps(asyncio.run(read(sys.argv[2]))))
        return
    print(f"stream_latency: writer -> Redis -> long-polling reader process, {SECONDS:.0f} s per run, {REDIS_URL}")
    for rate in RATES:
        runs = [run_rate(rate) for _ in range(RUNS)]
        stats = {name: median([run[name] for run in runs]) for name in ("p50", "p99", "max")}
        verdict = "meets" if stats["p99"] <= 10 else "MISSES"
        per_run = ", ".join(f"{run['p99']:.1f}" for run in runs)
        print(
            f"  {rate:>6,} lines/s: p50 {stats['p50']:6.2f} ms  p99 {stats['p99']:6.2f} ms  max {stats['max']:7.2f} ms"
            f"  (medians of {RUNS} runs of {int(rate * SECONDS):,} lines; {verdict} p99 <= 10 ms;"
            f" p99 per run: {per_run})"
        )


if __name__ == "__main__":
    main()

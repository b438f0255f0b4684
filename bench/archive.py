"""Archiver throughput and memory: ``archive_logs`` to moto S3 vs a bare XRANGE-page loop.

For 100,000 and then 1,000,000 entries of 80-byte lines (written with pipelined XADD into the
Redis of ``REDIS_URL``), a FRESH subprocess measures, alternating, ``ROUNDS`` times each:

- bare loop: XRANGE pages of 1,000 + ``entry_record`` + ``orjson`` into one bytearray per
  page, nothing uploaded — the floor the archiver cannot beat;
- archive: ``archive_logs`` (pages of 1,000, streaming multipart upload, index sidecar) to
  moto S3; the archive and its index are deleted between rounds so each round uploads.

and reports its peak RSS (``ru_maxrss``) — one process per size, so peaks never mask each
other. moto runs in a separate manager process (its ``complete_multipart_upload`` joins the
whole object in memory, which is S3's memory, not the archiver's); parts cross a local pipe.

Targets: archive/bare ≥ 0.5; peak RSS at 1,000,000 lines ≤ 1.5× the peak at 100,000.
Run as ``python -m bench.archive``. The keys are deleted afterwards.
"""

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from multiprocessing.managers import BaseManager
from typing import Any

import hiredis  # noqa: F401  (the parser the Lambda layer ships; fail loudly if missing)
import orjson
import redis as sync_redis
from redis.asyncio import Redis

from bench.common import REDIS_URL, median, run_child, start_moto_s3
from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import archive_key, index_key, logs_key, meta_key
from buildlogs.stream.entries import entry_record

SIZES = (100_000, 1_000_000)
LINE_BYTES = 80
WRITE_BATCH = 1000
PAGE = 1000
ROUNDS = 3
BUCKET = "bench-archive"
REGION = "us-east-1"
RSS_TARGET = 1.5
RATIO_TARGET = 0.5
_S3_METHODS = (
    "put_object",
    "head_object",
    "delete_object",
    "create_bucket",
    "create_multipart_upload",
    "upload_part",
    "complete_multipart_upload",
    "abort_multipart_upload",
)
_AUTHKEY_ENV = "BENCH_ARCHIVE_AUTHKEY"


# -- moto S3 in its own process --------------------------------------------------------------------

_client: Any = None


def _start_moto() -> None:
    """Manager-process initializer: moto's S3 mock and one boto3 client for every proxy."""
    global _client
    _client = start_moto_s3(REGION)


def _moto_s3() -> Any:
    return _client


class S3Manager(BaseManager):
    """Serves the moto S3 client to other processes (a proxy with the boto3 methods used here)."""


S3Manager.register("s3", callable=_moto_s3, exposed=_S3_METHODS)


def connect_s3(address: tuple[str, int], authkey: bytes) -> Any:
    manager = S3Manager(address=address, authkey=authkey)
    manager.connect()
    return manager.s3()  # type: ignore[attr-defined]


# -- the measured child ----------------------------------------------------------------------------


async def bare_loop(redis: Redis, key: str) -> tuple[float, int]:
    """Read and serialise every entry like the archiver does, without uploading."""
    dumps, record, option = orjson.dumps, entry_record, orjson.OPT_APPEND_NEWLINE
    lines, start, size = 0, "-", 0
    began = time.perf_counter()
    while True:
        page: Any = await redis.xrange(key, min=start, max="+", count=PAGE)
        if not page:
            break
        chunk = bytearray()
        for entry_id, fields in page:
            chunk += dumps(record(entry_id, fields), option=option)
        lines += len(page)
        size += len(chunk)
        if len(page) < PAGE:
            break
        start = f"({page[-1][0]}"
    return time.perf_counter() - began, lines


async def child(build_id: str, address: tuple[str, int], authkey: bytes) -> dict[str, Any]:
    s3 = connect_s3(address, authkey)
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    key = logs_key(build_id)
    bare: list[float] = []
    archived: list[float] = []
    lines = size = 0
    try:
        for _ in range(ROUNDS):
            seconds, lines = await bare_loop(redis, key)
            bare.append(seconds)
            began = time.perf_counter()
            result = await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=3600, page_size=PAGE)
            archived.append(time.perf_counter() - began)
            assert result is not None, "archival was skipped"
            assert result.uploaded, "the archive was not uploaded"
            head = s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))
            assert head["Metadata"]["lines"] == str(result.lines)
            assert head["ContentLength"] == result.bytes
            size = result.bytes
            for stale in (archive_key(build_id), index_key(build_id)):  # the next round uploads again
                s3.delete_object(Bucket=BUCKET, Key=stale)
    finally:
        await redis.aclose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"lines": lines, "bytes": size, "bare": bare, "archive": archived, "peak_rss_kib": peak_kib}


# -- the parent: data, one fresh subprocess per size, report -----------------------------------------


def write_entries(client: sync_redis.Redis, build_id: str, count: int) -> float:
    key = logs_key(build_id)
    text = "x" * (LINE_BYTES - 10)  # "%08d " + 70 characters + newline = 80 bytes
    began = time.perf_counter()
    for offset in range(0, count, WRITE_BATCH):
        pipe = client.pipeline(transaction=False)
        ts = time.time_ns() // 1_000_000
        for index in range(offset, min(count, offset + WRITE_BATCH)):
            pipe.xadd(key, {"ts": ts, "source": "stdout", "phase": "build", "text": f"{index:08d} {text}"})
        pipe.execute()
    assert client.xlen(key) == count
    return time.perf_counter() - began


def measure(build_id: str, address: tuple[str, int], authkey: bytes) -> dict[str, Any]:
    return run_child("bench.archive", [build_id, address[0], str(address[1])], _AUTHKEY_ENV, authkey)


def main() -> None:
    authkey = os.urandom(16)
    manager = S3Manager(address=("127.0.0.1", 0), authkey=authkey)
    manager.start(initializer=_start_moto)
    client: sync_redis.Redis = sync_redis.Redis.from_url(REDIS_URL, decode_responses=True)
    results: dict[int, dict[str, Any]] = {}
    run = uuid.uuid4().hex[:8]
    try:
        address: tuple[str, int] = manager.address  # type: ignore[assignment]
        manager.s3().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        for count in SIZES:
            build_id = f"bench-archive-{run}-{count}"
            try:
                write_seconds = write_entries(client, build_id, count)
                results[count] = measure(build_id, address, authkey)
                results[count]["write"] = write_seconds
            finally:
                client.delete(logs_key(build_id), meta_key(build_id), f"job:{{{build_id}}}:summary")
    finally:
        client.close()
        manager.shutdown()
    print(f"archive: {LINE_BYTES}-byte lines, XRANGE pages of {PAGE}, moto S3 (own process), {REDIS_URL}")
    for count, result in results.items():
        bare_rate = result["lines"] / median(result["bare"])
        archive_rate = result["lines"] / median(result["archive"])
        print(
            f"  {count:>9,} lines ({result['bytes'] / 1e6:6.1f} MB NDJSON, written at {count / result['write']:,.0f}/s)"
        )
        print(f"    bare XRANGE+orjson loop: {bare_rate:10,.0f} lines/s  (median of {ROUNDS})")
        print(f"    archive_logs           : {archive_rate:10,.0f} lines/s  (median of {ROUNDS})")
        print(f"    ratio archive/bare     : {archive_rate / bare_rate:.2f}  (target >= {RATIO_TARGET})")
        print(f"    peak RSS (fresh process): {result['peak_rss_kib'] / 1024:7.1f} MiB")
    small, large = (results[size]["peak_rss_kib"] for size in SIZES)
    print(f"  peak RSS {SIZES[1]:,} / {SIZES[0]:,} lines: {large / small:.2f}  (target <= {RSS_TARGET})")


def _child_main(argv: list[str]) -> None:
    build_id, host, port = argv
    authkey = bytes.fromhex(os.environ[_AUTHKEY_ENV])
    result = asyncio.run(child(build_id, (host, int(port)), authkey))
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child_main(sys.argv[2:])
    else:
        main()

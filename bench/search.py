"""Full-log search on a 1,000,000-line archived log in moto S3 vs a bare scan of the same NDJSON.

The archive (``build-logs/{id}/build.jsonl``, the archiver's record shape, ~100-byte lines:
1 in 25 carries ANSI colour escapes, 1 in 50 a non-ASCII character, as build output does) is
generated inside a moto S3 that runs in its own process (a ``multiprocessing`` manager, as in
``bench.archive``): the object lives in S3's memory, never in the measured processes'. Each
measurement is a FRESH subprocess (so peak RSS never masks another's) that reads the object
through a real botocore ``StreamingBody`` fed over the manager's pipe in 1 MiB reads:

- bare scan: ``iter_lines`` (64 KiB chunks, as the archive reader reads) + ``orjson.loads`` of
  every line — the floor of any search that parses the log;
- transport: the body's chunks only (no line split, no parse): what moving the bytes costs here;
- search: ``search_logs`` (the API's entry point; Redis has no stream, so the archive answers)
  for a rare plain word (0.1% of lines), a frequent one (10%), and an RE2 regex. Each checks
  its exact ``total``.

Rounds alternate the modes, ``ROUNDS`` times; medians of the time, the highest peak RSS
(``ru_maxrss``; every child imports the same modules first). Printed as ratios to the bare scan:
lines/s (higher is faster) and peak RSS (1.0 = the bare scan's). No target is set.
Run as ``python -m bench.search`` (needs the Redis of ``REDIS_URL``, like the other benches).
"""

import asyncio
import io
import json
import os
import resource
import sys
import time
import uuid
from multiprocessing.managers import BaseManager
from typing import Any

import orjson
from botocore.response import StreamingBody
from redis.asyncio import Redis

from bench.common import REDIS_URL, median, run_child, start_moto_s3
from buildlogs.api.logs import search_logs
from buildlogs.api.search import LogQuery
from buildlogs.keys import archive_key

LINES = 1_000_000
ROUNDS = 3
BUCKET = "bench-search"
REGION = "us-east-1"
READ_SIZE = 1 << 20  # bytes per call over the manager's pipe
LINE_CHUNK = 64 * 1024  # the archive reader's CHUNK_SIZE
_AUTHKEY_ENV = "BENCH_SEARCH_AUTHKEY"

# mode -> (query, regex, expected total)
SEARCHES: dict[str, tuple[str, bool, int]] = {
    "plain, rare (0.1%)": ("NEEDLE", False, LINES // 1000),
    "plain, frequent (10%)": ("warning", False, LINES // 10),
    "regex": (r"err(or)? \d{3}\b", True, LINES // 500),
}


def line_text(n: int) -> str:
    """Line ``n`` of the generated log (the totals in SEARCHES follow from these rules)."""
    text = f"{n:08d} compiling src/module_{n % 977}.ts"
    if n % 1000 == 0:
        text += " needle"
    if n % 10 == 5:
        text += " Warning: deprecated API"
    if n % 500 == 3:
        text += f" error {n % 1000:03d}"
    if n % 25 == 1:
        text += " \x1b[32mok\x1b[0m"
    if n % 50 == 7:
        text += " ✓ déjà"
    return text + " " + "." * max(0, 60 - len(text))


# -- moto S3 in its own process --------------------------------------------------------------------

_client: Any = None
_bodies: dict[int, Any] = {}


def _start_moto() -> None:
    """Manager-process initializer: moto's S3 mock and one boto3 client."""
    global _client
    _client = start_moto_s3(REGION)
    _client.create_bucket(Bucket=BUCKET)


class MotoStore:
    """What the measured processes may do with the moto S3: generate the log, stream it."""

    def generate(self, key: str, lines: int) -> int:
        """Write the log object (in the moto process), return its size."""
        out = io.BytesIO()
        for n in range(lines):
            record = {
                "id": f"{1_700_000_000_000 + n // 1000}-{n % 1000}",
                "ts": 1_700_000_000_000 + n,
                "source": "stderr" if n % 10 == 5 else "stdout",
                "text": line_text(n),
                "phase": "build",
            }
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        data = out.getvalue()
        _client.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="application/x-ndjson")
        return len(data)

    def open(self, key: str) -> tuple[int, int]:
        response = _client.get_object(Bucket=BUCKET, Key=key)
        handle = len(_bodies) + 1
        _bodies[handle] = response["Body"]
        return handle, int(response["ContentLength"])

    def read(self, handle: int, size: int) -> bytes:
        data: bytes = _bodies[handle].read(size)
        return data

    def close(self, handle: int) -> None:
        _bodies.pop(handle).close()

    def delete(self, key: str) -> None:
        _client.delete_object(Bucket=BUCKET, Key=key)


class S3Manager(BaseManager):
    """Serves the moto store to other processes."""


S3Manager.register("store", callable=MotoStore, exposed=("generate", "open", "read", "close", "delete"))


class _RemoteRaw:
    """A raw stream over the manager's pipe, read in ``READ_SIZE`` pieces (what StreamingBody wraps)."""

    def __init__(self, store: Any, handle: int) -> None:
        self._store, self._handle = store, handle
        self._buffer = b""

    def read(self, amt: int | None = None) -> bytes:
        while amt is None or len(self._buffer) < amt:
            piece: bytes = self._store.read(self._handle, READ_SIZE)
            if not piece:
                break
            self._buffer += piece
        size = len(self._buffer) if amt is None else amt
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        self._store.close(self._handle)


class RemoteS3:
    """Just the ``get_object`` the archive scan calls, with a real botocore body."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        assert "Range" not in kwargs, "the search streams the whole object"
        handle, length = self._store.open(kwargs["Key"])
        return {"Body": StreamingBody(_RemoteRaw(self._store, handle), length), "Metadata": {}}


def connect(address: tuple[str, int], authkey: bytes) -> Any:
    manager = S3Manager(address=address, authkey=authkey)
    manager.connect()
    return manager.store()  # type: ignore[attr-defined]


# -- the measured child ----------------------------------------------------------------------------


def transport(s3: RemoteS3, key: str) -> int:
    """Only move the bytes (the floor every scan pays here): counts newlines, parses nothing."""
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    try:
        return sum(chunk.count(b"\n") for chunk in body.iter_chunks(256 * 1024))
    finally:
        body.close()


def bare_scan(s3: RemoteS3, key: str) -> int:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    loads, lines = orjson.loads, 0
    try:
        for line in body.iter_lines(chunk_size=LINE_CHUNK):
            loads(line)
            lines += 1
    finally:
        body.close()
    return lines


async def run_search(s3: Any, build_id: str, mode: str) -> int:  # a RemoteS3 in place of the boto3 client
    q, regex, expected = SEARCHES[mode]
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        page = await search_logs(
            redis, s3, BUCKET, build_id, build_exists=lambda: True, query=LogQuery.parse(q, regex=regex)
        )
    finally:
        await redis.aclose()
    assert page.total == expected, f"{mode}: total {page.total}, expected {expected}"
    assert len(page.matches) == 100
    return LINES


def child(mode: str, build_id: str, address: tuple[str, int], authkey: bytes) -> dict[str, Any]:
    s3 = RemoteS3(connect(address, authkey))
    began = time.perf_counter()
    if mode in ("bare", "transport"):
        lines = (bare_scan if mode == "bare" else transport)(s3, archive_key(build_id))
    else:
        lines = asyncio.run(run_search(s3, build_id, mode))
    seconds = time.perf_counter() - began
    assert lines == LINES, f"{mode}: {lines} lines"
    return {"seconds": seconds, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


# -- the parent: data, one fresh subprocess per measurement, report ------------------------------------


def measure(mode: str, build_id: str, address: tuple[str, int], authkey: bytes) -> dict[str, Any]:
    return run_child("bench.search", [mode, build_id, address[0], str(address[1])], _AUTHKEY_ENV, authkey)


def main() -> None:
    authkey = os.urandom(16)
    manager = S3Manager(address=("127.0.0.1", 0), authkey=authkey)
    manager.start(initializer=_start_moto)
    build_id = f"bench-search-{uuid.uuid4().hex[:8]}"
    modes = ["transport", "bare", *SEARCHES]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        address: tuple[str, int] = manager.address  # type: ignore[assignment]
        store = manager.store()  # type: ignore[attr-defined]
        began = time.perf_counter()
        size = store.generate(archive_key(build_id), LINES)
        generated = time.perf_counter() - began
        for _ in range(ROUNDS):
            for mode in modes:
                runs[mode].append(measure(mode, build_id, address, authkey))
        store.delete(archive_key(build_id))
    finally:
        manager.shutdown()
    bare_rate = LINES / median([run["seconds"] for run in runs["bare"]])
    bare_rss = max(run["peak_rss_kib"] for run in runs["bare"])
    print(
        f"search: {LINES:,} archived lines ({size / 1e6:.1f} MB NDJSON, generated in {generated:.1f} s), "
        f"moto S3 (own process), a fresh process per run, medians of {ROUNDS}"
    )
    moved = LINES / median([run["seconds"] for run in runs["transport"]])
    label = "transport only (iter_chunks, no parse)"
    print(f"  {label:38}: {moved:10,.0f} lines/s  (the floor of both sides below)")
    label = "bare scan (iter_lines + orjson.loads)"
    print(f"  {label:38}: {bare_rate:10,.0f} lines/s  peak RSS {bare_rss / 1024:6.1f} MiB")
    for mode in SEARCHES:
        rate = LINES / median([run["seconds"] for run in runs[mode]])
        rss = max(run["peak_rss_kib"] for run in runs[mode])
        print(
            f"  {'search_logs ' + mode:38}: {rate:10,.0f} lines/s  peak RSS {rss / 1024:6.1f} MiB"
            f"  ratio {rate / bare_rate:5.2f}x speed, {rss / bare_rss:4.2f}x RSS"
        )


def _child_main(argv: list[str]) -> None:
    mode, build_id, host, port = argv
    authkey = bytes.fromhex(os.environ[_AUTHKEY_ENV])
    print(json.dumps(child(mode, build_id, (host, int(port)), authkey)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child_main(sys.argv[2:])
    else:
        main()

"""Helpers of the API's log route tests: a dead Redis for 503s, scripted logs of many lines."""

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from buildlogs.api.app import app
from buildlogs.api.deps import deps
from buildlogs.keys import logs_key
from buildlogs.settings import Settings
from buildlogs.stream.streamer import LogStreamer
from tests.support.api import rest_event


@dataclass
class RawResponse:
    """A resolver response as a client sees it: status, headers (case-insensitive names), text body."""

    status: int
    headers: dict[str, str]
    text: str
    payload_bytes: int = 0  # the whole Lambda response as JSON (ASCII): what its 6 MB limit weighs

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.text)


def raw_call(path: str, headers: dict[str, str] | None = None) -> RawResponse:
    """GET ``path`` through the resolver in-process (moto and Redis as set up by ``moto_api``)."""
    result = app.resolve(rest_event("GET", path, headers=headers), None)  # type: ignore[arg-type]
    merged = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = ", ".join(str(value) for value in values)
    body = result.get("body") or ""
    text = base64.b64decode(body).decode("utf-8") if result.get("isBase64Encoded") else body
    return RawResponse(int(result["statusCode"]), merged, text, len(json.dumps(result)))


def _dead_redis(_settings: Settings) -> Redis:
    return Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


@contextmanager
def redis_down() -> Iterator[None]:
    """The API's Redis refuses connections while inside (deps' factory restored afterwards)."""
    factory = deps.redis_factory
    deps.redis_factory = _dead_redis
    try:
        yield
    finally:
        deps.redis_factory = factory


def numbered_lines(count: int, phase: str = "build") -> list[tuple[str, str, dict[str, Any]]]:
    """A write_log script: one stage of ``count`` numbered stdout lines, then the end entry."""
    return [
        ("stage", phase, {}),
        *(("stdout", f"line {index}", {}) for index in range(count)),
        ("end_stage", "", {"exit_code": 0}),
        ("event", "end of log: SUCCEEDED", {"event": "end", "status": "SUCCEEDED"}),
    ]


class Progress:
    """How many events a reader has received, for a writer that waits on it (no sleeps)."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self, count: int = 1) -> None:
        with self._changed:
            self._count += count
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._count >= count, timeout):
                raise TimeoutError(f"the reader got {self._count} of {count} events in {timeout}s")


async def _write_paced(redis_url: str, build_id: str, batches: int, size: int, progress: Progress) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        streamer = LogStreamer(client, build_id, "install", flush_interval_ms=0)
        await streamer.stage("install")
        for batch in range(batches):
            if batch == batches // 2:
                await streamer.end_stage(exit_code=0)
                await streamer.stage("build")
            for index in range(size):
                await (streamer.on_stderr if index % 5 == 4 else streamer.on_stdout)(f"batch {batch} line {index}\n")
            await streamer.flush()
            # the reader catches up (its page ends and it reconnects) before the log grows again
            await asyncio.to_thread(progress.wait_for, await client.xlen(logs_key(build_id)))
        await streamer.write_event("end of log: SUCCEEDED", event="end", status="SUCCEEDED")
        await streamer.close()
    finally:
        await client.aclose()


@contextmanager
def paced_writer(
    redis_url: str, build_id: str, batches: int, size: int, progress: Progress
) -> Iterator[list[BaseException]]:
    """Append ``batches`` batches of ``size`` lines (two stages, some stderr, then ``end``) on a
    thread, each once the reader has received everything before it; yields the writer's errors."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_write_paced(redis_url, build_id, batches, size, progress))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="paced-writer", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        thread.join(timeout=30)


async def _write_many(redis_url: str, build_id: str, count: int, text_size: int) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        key = logs_key(build_id)
        for start in range(0, count, 1000):
            pipe = client.pipeline(transaction=False)
            for index in range(start, min(count, start + 1000)):
                text = f"\x1b[32m{index:08d}\x1b[0m " + "x" * max(0, text_size - 9)
                pipe.xadd(key, {"ts": 1_700_000_000_000 + index, "source": "stdout", "phase": "build", "text": text})
            await pipe.execute()
        await client.xadd(key, {"ts": 1, "source": "system", "phase": "build", "text": "end", "event": "end"})
    finally:
        await client.aclose()


def write_many_lines(redis_url: str, build_id: str, count: int, text_size: int = 80) -> None:
    """``count`` coloured stdout lines of ``text_size`` visible characters (pipelined), then ``end``."""
    asyncio.run(_write_many(redis_url, build_id, count, text_size))


# Lines as long as LOG_MAX_LINE_BYTES allows (16 KiB of UTF-8), of what grows most in a response:
# plain ASCII, quotes and backslashes (escaped twice: JSON body, then the Lambda envelope), é
# (written \u00e9 by the resolver).
WIDE_FILLERS = ("x", '"', "\\", "é")
WIDE_LINE_BYTES = 16 * 1024


def wide_text(index: int) -> str:
    """Line ``index``: ``NNNNNN line `` then a filler up to exactly 16 KiB of UTF-8."""
    head = f"{index:06d} line "
    filler = WIDE_FILLERS[index % len(WIDE_FILLERS)]
    return head + filler * ((WIDE_LINE_BYTES - len(head)) // len(filler.encode()))


async def _write_wide(redis_url: str, build_id: str, count: int) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        key = logs_key(build_id)
        pipe = client.pipeline(transaction=False)
        for index in range(count):
            source = "stderr" if index % 3 == 2 else "stdout"
            pipe.xadd(
                key, {"ts": 1_700_000_000_000 + index, "source": source, "phase": "build", "text": wide_text(index)}
            )
        await pipe.execute()
        await client.xadd(key, {"ts": 1, "source": "system", "phase": "build", "text": "end", "event": "end"})
    finally:
        await client.aclose()


def write_wide_lines(redis_url: str, build_id: str, count: int) -> None:
    """``count`` lines of 16 KiB (see :func:`wide_text`; every third on stderr), then ``end``."""
    asyncio.run(_write_wide(redis_url, build_id, count))

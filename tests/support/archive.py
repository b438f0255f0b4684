"""Helpers of the archive tests: moto S3, stream builders, S3 wrappers and fakes."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
from botocore.exceptions import ClientError
from moto import mock_aws
from redis.asyncio import Redis

from buildlogs.keys import archive_key, logs_key
from buildlogs.stream.entries import entry_record
from buildlogs.stream.streamer import LogStreamer

BUCKET = "buildlogs-archive-test"
REGION = "us-east-1"


@contextmanager
def moto_s3() -> Iterator[Any]:
    """A moto S3 client with the archive bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


async def write_build_log(redis: Redis, build_id: str) -> None:
    """A realistic stream, written by the real LogStreamer: stages, stdout, stderr, events."""
    streamer = LogStreamer(redis, build_id, "provision", flush_lines=50, flush_interval_ms=0)
    await streamer.stage("provision")
    await streamer.on_stdout("sandbox ready\n")
    await streamer.stage("install")
    await streamer.on_stdout("added 1 package\nwarn: é ünïcode ✓\n")
    await streamer.on_stderr(b"npm WARN deprecated\n\x1b[31mred\x1b[0m\n")
    await streamer.end_stage(exit_code=0)
    await streamer.stage("build")
    for index in range(120):
        await streamer.on_stdout(f"compiling module {index}\n")
    await streamer.write_event("build step failed", event="build_failed", exit_code=1)
    await streamer.close()


async def write_lines(redis: Redis, build_id: str, count: int, text_size: int = 80, phase: str = "build") -> None:
    """``count`` stdout entries of ``text_size`` characters, pipelined (fast for big streams)."""
    key = logs_key(build_id)
    for start in range(0, count, 1000):
        pipe = redis.pipeline(transaction=False)
        for index in range(start, min(count, start + 1000)):
            text = f"{index:08d} " + "x" * max(0, text_size - 9)
            pipe.xadd(key, {"ts": 1_700_000_000_000 + index, "source": "stdout", "phase": phase, "text": text})
        await pipe.execute()


async def stream_records(redis: Redis, build_id: str) -> list[dict[str, Any]]:
    """Every entry of the stream as the archive's NDJSON object, in order."""
    return [entry_record(entry_id, fields) for entry_id, fields in await redis.xrange(logs_key(build_id))]


def archived_records(s3: Any, build_id: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=BUCKET, Key=archive_key(build_id))["Body"].read()
    assert body.endswith(b"\n")
    return [orjson.loads(line) for line in body.splitlines()]


def multipart_uploads(s3: Any) -> list[Any]:
    return list(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


class CountingBody:
    """Wraps a StreamingBody: counts the bytes actually read and whether it was closed."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.read_bytes = 0
        self.closed = False

    def iter_lines(self, chunk_size: int = 1024, keepends: bool = False) -> Any:
        pending = b""
        for chunk in self._body.iter_chunks(chunk_size):
            self.read_bytes += len(chunk)
            lines = (pending + chunk).splitlines(True)
            pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
            for line in lines:
                yield line if keepends else line.rstrip(b"\n")
        if pending:
            yield pending

    def read(self) -> bytes:
        data: bytes = self._body.read()
        self.read_bytes += len(data)
        return data

    def close(self) -> None:
        self.closed = True
        self._body.close()


class RecordingS3:
    """Wraps the moto client: records every GetObject (key, Range) and wraps its body."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gets: list[tuple[str, str | None]] = []
        self.bodies: list[CountingBody] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append((kwargs["Key"], kwargs.get("Range")))
        response = self._client.get_object(**kwargs)
        body = CountingBody(response["Body"])
        self.bodies.append(body)
        return {**response, "Body": body}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class KillRecorder:
    """An in-memory ``kill_sandbox``: records the ids it was asked to kill."""

    killed: list[str] = field(default_factory=list)
    error: Exception | None = None

    async def __call__(self, sandbox_id: str) -> None:
        self.killed.append(sandbox_id)
        if self.error is not None:
            raise self.error


class CountingS3:
    """Wraps a boto3 S3 client: counts calls per method; optionally fails one call once."""

    def __init__(self, client: Any, fail_method: str | None = None, fail_on_call: int = 0) -> None:
        self._client = client
        self.calls: dict[str, int] = {}
        self.part_sizes: list[int] = []  # of every upload_part call, whatever its key
        self.keys: dict[str, list[str]] = {}  # method → the Key of each call, in order
        self.sizes_by_key: dict[str, list[int]] = {}  # object key → its parts' sizes, in order
        self._fail_method = fail_method
        self._fail_on_call = fail_on_call
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if "Key" in kwargs:
                self.keys.setdefault(name, []).append(kwargs["Key"])
            if name == self._fail_method and self.calls[name] == self._fail_on_call and not self.failed:
                self.failed = True
                raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, name)
            if name == "upload_part":
                self.part_sizes.append(len(kwargs["Body"]))
                self.sizes_by_key.setdefault(kwargs["Key"], []).append(len(kwargs["Body"]))
            return method(**kwargs)

        return call


class LockingS3:
    """Wraps the moto client for concurrent archivers: one S3 call at a time, as real S3 answers them.

    Real S3 makes each request atomic (two PUTs of one key: the last one wins, whole). moto does
    not: two threads putting the same key at once can close each other's buffer (``ValueError:
    I/O operation on closed file`` inside ``put_object``). The lock gives each call S3's
    atomicity and nothing more: the archivers still run concurrently and interleave their calls
    (and their Redis transactions) however the scheduler runs them. A body returned by
    ``get_object`` is read after the call, outside the lock (moto hands out a copy).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                return method(*args, **kwargs)

        return call


class NoCalls:
    """A client that fails the test on any use (proves that nothing was called)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"{self._name}.{attr} was used")

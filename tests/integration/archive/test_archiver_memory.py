"""Memory stays bounded whatever the log size: no full-log string, no list of all entries."""

import hashlib
import tracemalloc
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import archive_key, logs_key, text_key
from buildlogs.stream.entries import entry_record
from tests.support.archive import write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

PART_SIZE = 256 * 1024


class HashingS3:
    """An S3 stand-in that keeps no bodies: it hashes each object's bytes in part order."""

    def __init__(self) -> None:
        self.digests: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}
        self.parts: dict[str, int] = {}
        self.completed: set[str] = set()

    def create_multipart_upload(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self.digests[Key], self.sizes[Key], self.parts[Key] = hashlib.sha256(), 0, 0
        return {"UploadId": f"u-{Key}"}

    def upload_part(self, *, Key: str, Body: bytes, PartNumber: int, **_: Any) -> dict[str, Any]:
        assert PartNumber == self.parts[Key] + 1
        self.digests[Key].update(Body)
        self.sizes[Key] += len(Body)
        self.parts[Key] += 1
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self.completed.add(Key)
        return {}

    def put_object(self, *, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        self.digests[Key], self.sizes[Key], self.parts[Key] = hashlib.sha256(Body), len(Body), 0
        self.completed.add(Key)
        return {}

    def head_object(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("a fresh stream needs no HEAD")


async def expected_digest(redis: Redis, build_id: str) -> tuple[str, int]:
    """The NDJSON the archive must contain, hashed page by page."""
    digest, size, start = hashlib.sha256(), 0, "-"
    while page := await redis.xrange(logs_key(build_id), min=start, count=1000):
        for entry_id, fields in page:
            line = orjson.dumps(entry_record(entry_id, fields)) + b"\n"
            digest.update(line)
            size += len(line)
        start = f"({page[-1][0]}"
    return digest.hexdigest(), size


async def archive_traced(redis: Redis, build_id: str, lines: int) -> tuple[int, int, HashingS3]:
    """Archive a log of ``lines`` lines; its NDJSON size and the peak of traced memory."""
    await write_lines(redis, build_id, lines, text_size=160)
    fake_s3 = HashingS3()
    tracemalloc.start()
    try:
        result = await archive_logs(redis, fake_s3, "bucket", build_id, "SUCCEEDED", part_size=PART_SIZE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is not None
    assert result.lines == lines + 1
    key = archive_key(build_id)
    assert {key, text_key(build_id), text_key(build_id, ansi=True)} <= fake_s3.completed
    digest, size = await expected_digest(redis, build_id)
    assert (fake_s3.digests[key].hexdigest(), fake_s3.sizes[key], result.bytes) == (digest, size, size)
    return size, peak, fake_s3


async def test_archiving_a_large_log_keeps_memory_flat_and_far_below_its_size(redis: Redis, build_id: str) -> None:
    # GIVEN a log of 8,000 lines and one of 40,000 lines (~10 MB of NDJSON)
    # WHEN each is archived while tracemalloc traces every allocation
    small_size, small_peak, _ = await archive_traced(redis, f"{build_id}-small", 8_000)
    await redis.delete(logs_key(f"{build_id}-small"))
    size, peak, fake_s3 = await archive_traced(redis, build_id, 40_000)

    # THEN the whole large log went up in many parts, and its peak is that of the small log:
    # memory depends on the part and page sizes, not on the log's size
    assert size > 9_000_000
    assert size > 4 * small_size
    assert fake_s3.parts[archive_key(build_id)] >= 15
    assert fake_s3.parts[text_key(build_id)] >= 15  # the text renderings stream in parts too
    # (three objects stream at once — the log and its two text renderings — each near two parts)
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte log"
    assert peak < small_peak * 1.25, f"peak {peak} for {size} bytes vs {small_peak} for {small_size} bytes"

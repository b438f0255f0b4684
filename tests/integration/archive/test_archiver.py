"""archive_logs against a real Redis and moto S3: content, idempotency, statuses, skips, failures."""

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from buildlogs.archive.archiver import CONTENT_TYPE, archive_logs
from buildlogs.keys import archive_key, index_key, logs_key, meta_key, text_key
from buildlogs.statuses import TERMINAL
from tests.support.archive import (
    BUCKET,
    CountingS3,
    KillRecorder,
    LockingS3,
    NoCalls,
    archived_records,
    multipart_uploads,
    stream_records,
    write_build_log,
    write_lines,
)

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600


def ends(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record.get("event") == "end"]


async def test_archive_round_trips_exactly_the_stream_entries_in_order(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a build log written by the real LogStreamer
    await write_build_log(redis, build_id)
    before = await stream_records(redis, build_id)

    # WHEN the build's terminal status is archived
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", kill_sandbox=KillRecorder(), ttl_seconds=TTL)

    # THEN the NDJSON object holds exactly the stream's entries, ids included, then one end entry
    assert result is not None
    stream = await stream_records(redis, build_id)
    archived = archived_records(s3, build_id)
    assert archived == stream
    assert archived[: len(before)] == before
    assert len(archived) == len(before) + 1
    end = archived[-1]
    assert (end["event"], end["status"], end["source"], end["phase"]) == ("end", "FAILED", "system", "build")
    assert [r["id"] for r in archived] == [r["id"] for r in stream]
    assert any(r.get("event") == "build_failed" and r["exit_code"] == 1 for r in archived)
    assert any(r["text"] == "warn: é ünïcode ✓" for r in archived)
    # AND the result and the object's metadata describe it
    head = s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))
    assert head["ContentType"] == CONTENT_TYPE
    assert head["Metadata"] == {
        "build-id": build_id,
        "status": "FAILED",
        "lines": str(len(archived)),
        "last-id": end["id"],
    }
    assert (result.key, result.lines, result.bytes) == (archive_key(build_id), len(archived), head["ContentLength"])
    # AND only now do the stream and its meta hash expire
    assert 0 < await redis.ttl(logs_key(build_id)) <= TTL


async def test_duplicate_delivery_writes_one_end_and_leaves_the_same_object(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN a build archived once
    await write_lines(redis, build_id, 30)
    first = await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    first_head = s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))
    counting = CountingS3(s3)

    # WHEN EventBridge delivers the same event again
    second = await archive_logs(redis, counting, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN the stream still has exactly one end entry, last, and the object was not rewritten
    stream = await stream_records(redis, build_id)
    assert len(ends(stream)) == 1
    assert stream[-1]["event"] == "end"
    assert archived_records(s3, build_id) == stream
    second_head = s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))
    assert second_head["ETag"] == first_head["ETag"]
    assert second_head["LastModified"] == first_head["LastModified"]
    assert first is not None
    assert second is not None
    assert (second.key, second.lines, second.bytes) == (first.key, first.lines, first.bytes)
    assert not second.uploaded
    assert set(counting.calls) == {"head_object", "get_object"}  # reads only (the index is checked), no write


async def test_concurrent_deliveries_still_write_exactly_one_end(
    redis: Redis, redis_url: str, s3: Any, build_id: str
) -> None:
    # GIVEN a stream without an end entry and two archivers with their own connections (and one
    # S3 whose calls are atomic, as real S3's are: moto's concurrent PUTs of one key are not)
    await write_lines(redis, build_id, 200)
    other = Redis.from_url(redis_url, decode_responses=True)
    shared = LockingS3(s3)
    try:
        # WHEN the event and the sweep archive the build at the same time
        results = await asyncio.gather(
            archive_logs(redis, shared, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL),
            archive_logs(other, shared, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL),
        )
    finally:
        await other.aclose()

    # THEN one end entry exists and the object is the complete stream
    stream = await stream_records(redis, build_id)
    assert len(ends(stream)) == 1
    assert archived_records(s3, build_id) == stream
    assert all(result is not None and result.lines == 201 for result in results)


@pytest.mark.parametrize("status", TERMINAL)
async def test_each_terminal_status(redis: Redis, s3: Any, build_id: str, status: str) -> None:
    # GIVEN a build whose provision recorded its sandbox
    await write_lines(redis, build_id, 5, phase="install")
    await redis.hset(meta_key(build_id), "sandbox_id", "sbx-123")
    kill = KillRecorder()

    # WHEN the run ends with `status`
    await archive_logs(redis, s3, BUCKET, build_id, status, kill_sandbox=kill, ttl_seconds=TTL)

    # THEN the archive ends with `end` carrying the status; runs that never reached their Catch
    # get a BUILD line first and their sandbox killed
    archived = archived_records(s3, build_id)
    assert archived[-1]["event"] == "end"
    assert archived[-1]["status"] == status
    assert archived[-1]["phase"] == "install"
    uncaught = status in ("TIMED_OUT", "ABORTED")
    build_lines = [r for r in archived if r["text"] == f"BUILD {status}"]
    if uncaught:
        assert len(archived) == 7
        assert build_lines == [archived[-2]]
        assert archived[-2]["source"] == "system"
        assert kill.killed == ["sbx-123"]
    else:
        assert len(archived) == 6
        assert build_lines == []
        assert kill.killed == []
    assert s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))["Metadata"]["status"] == status
    assert 0 < await redis.ttl(meta_key(build_id)) <= TTL


async def test_a_failing_sandbox_kill_never_fails_archival(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a timed-out build whose sandbox cannot be killed
    await write_lines(redis, build_id, 3)
    await redis.hset(meta_key(build_id), "sandbox_id", "sbx-gone")
    kill = KillRecorder(error=RuntimeError("sandbox API down"))

    # WHEN it is archived
    result = await archive_logs(redis, s3, BUCKET, build_id, "TIMED_OUT", kill_sandbox=kill, ttl_seconds=TTL)

    # THEN the kill was attempted and the archive is complete anyway
    assert kill.killed == ["sbx-gone"]
    assert result is not None
    assert result.lines == 5
    assert archived_records(s3, build_id)[-2]["text"] == "BUILD TIMED_OUT"


async def test_empty_bucket_setting_writes_end_but_skips_s3_and_ttl(redis: Redis, build_id: str) -> None:
    # GIVEN a build log and no archive bucket configured
    await write_lines(redis, build_id, 4)

    # WHEN the build ends (an S3 client that fails the test on any use)
    result = await archive_logs(redis, NoCalls("s3"), "", build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN archival is skipped, the end entry is written and the stream keeps no TTL
    assert result is None
    stream = await stream_records(redis, build_id)
    assert len(stream) == 5
    assert stream[-1]["event"] == "end"
    assert await redis.ttl(logs_key(build_id)) == -1


async def test_missing_stream_archives_just_the_end(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an aborted build that never wrote a line
    # WHEN it is archived
    result = await archive_logs(redis, s3, BUCKET, build_id, "ABORTED", kill_sandbox=KillRecorder(), ttl_seconds=TTL)

    # THEN the archive holds the BUILD line and the end entry only
    archived = archived_records(s3, build_id)
    assert [(r["text"], r.get("event"), r["phase"]) for r in archived] == [
        ("BUILD ABORTED", "build_failed", "archive"),
        ("end of log: ABORTED", "end", "archive"),
    ]
    assert result is not None
    assert result.lines == 2


async def test_repeated_event_after_expiry_leaves_the_archive_untouched(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a build archived, whose stream has since expired
    await write_lines(redis, build_id, 10)
    await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    original = s3.get_object(Bucket=BUCKET, Key=archive_key(build_id))
    original_body = original["Body"].read()
    await redis.delete(logs_key(build_id), meta_key(build_id))

    # WHEN the event is delivered again (even with another status)
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", ttl_seconds=TTL)

    # THEN the archive is unchanged and no new stream was created
    again = s3.get_object(Bucket=BUCKET, Key=archive_key(build_id))
    assert again["Body"].read() == original_body
    assert again["ETag"] == original["ETag"]
    assert await redis.exists(logs_key(build_id)) == 0
    assert result is not None
    assert (result.lines, result.status, result.uploaded) == (11, "SUCCEEDED", False)


async def test_small_log_is_one_put(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a small log
    await write_lines(redis, build_id, 50)
    counting = CountingS3(s3)

    # WHEN it is archived
    await archive_logs(redis, counting, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN one PutObject wrote it, no multipart upload (the others: its two text renderings, then
    # its index.json sidecar — the log object last but the index)
    assert counting.calls == {"put_object": 4}
    assert counting.keys["put_object"] == [
        text_key(build_id),
        text_key(build_id, ansi=True),
        archive_key(build_id),
        index_key(build_id),
    ]


async def test_large_log_goes_up_in_parts(
    redis: Redis, s3: Any, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a log of several parts (moto's minimum part size lowered like S3's 5 MiB)
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)
    await write_lines(redis, build_id, 2500)
    counting = CountingS3(s3)

    # WHEN it is archived with 16 KiB parts, read in pages of 50 entries
    result = await archive_logs(
        redis, counting, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL, part_size=16384, page_size=50
    )

    # THEN parts of at least the part size (but the last) make one complete object
    assert result is not None
    sizes = counting.sizes_by_key[archive_key(build_id)]
    assert len(sizes) >= 10
    assert all(16384 <= size < 16384 + 50 * 200 for size in sizes[:-1])
    assert sizes[-1] > 0
    assert sum(sizes) == result.bytes
    assert counting.keys.get("put_object") == [index_key(build_id)]  # only the index.json sidecar
    # the log and its two text renderings, each one multipart upload (the texts completed first)
    assert counting.keys["create_multipart_upload"] == [
        archive_key(build_id),
        text_key(build_id, ansi=True),
        text_key(build_id),
    ]
    assert counting.keys["complete_multipart_upload"] == [
        text_key(build_id),
        text_key(build_id, ansi=True),
        archive_key(build_id),
    ]
    assert all(
        16384 <= size < 16384 + 50 * 200 for key in counting.sizes_by_key for size in counting.sizes_by_key[key][:-1]
    )
    assert archived_records(s3, build_id) == await stream_records(redis, build_id)
    head = s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))
    assert head["ContentType"] == CONTENT_TYPE
    assert head["Metadata"]["lines"] == "2501"
    assert multipart_uploads(s3) == []


async def test_a_failed_part_aborts_the_upload_and_the_retry_completes_it(
    redis: Redis, s3: Any, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a multi-part log and S3 failing the third part once
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1024)
    await write_lines(redis, build_id, 2000)
    flaky = CountingS3(s3, fail_method="upload_part", fail_on_call=3)

    # WHEN the first attempt fails
    with pytest.raises(Exception, match="injected"):
        await archive_logs(redis, flaky, BUCKET, build_id, "FAILED", ttl_seconds=TTL, part_size=16384)

    # THEN nothing is left behind: no object, no multipart upload, and the stream has no TTL yet
    assert flaky.failed
    assert flaky.calls["abort_multipart_upload"] == flaky.calls["create_multipart_upload"] >= 1
    assert multipart_uploads(s3) == []
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert await redis.ttl(logs_key(build_id)) == -1

    # WHEN the retry runs (Lambda's async retry)
    result = await archive_logs(redis, flaky, BUCKET, build_id, "FAILED", ttl_seconds=TTL, part_size=16384)

    # THEN one complete object with one end entry exists and no upload is orphaned
    stream = await stream_records(redis, build_id)
    archived = archived_records(s3, build_id)
    assert archived == stream
    assert len(archived) == 2001
    assert len(ends(archived)) == 1
    assert multipart_uploads(s3) == []
    assert result is not None
    assert result.lines == 2001
    assert 0 < await redis.ttl(logs_key(build_id)) <= TTL


async def test_redis_unreachable_raises_for_a_retry(s3: Any, build_id: str) -> None:
    # GIVEN a Redis that refuses connections
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        # WHEN / THEN archival raises (transient: Lambda retries, then the DLQ) and writes nothing
        with pytest.raises(RedisConnectionError):
            await archive_logs(dead, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    finally:
        await dead.aclose()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

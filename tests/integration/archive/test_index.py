"""The archive's index sidecar: pages in O(page) with a Range GET, fallbacks, idempotency."""

from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from redis.asyncio import Redis

from buildlogs.api.logs import LogFilter
from buildlogs.archive.archiver import archive_logs
from buildlogs.archive.index import INDEX_EVERY, load_index
from buildlogs.archive.reader import MAX_FILTERED_PAGES, read_archive_page
from buildlogs.keys import archive_key, index_key, logs_key
from tests.support.archive import BUCKET, RecordingS3, archived_records, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600
LINES = 5000  # + the end entry: offsets at entries 0, 1000, ..., 5000


class FailingIndexPut:
    """Wraps the moto client: PutObject of an index.json fails (the log itself goes up)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"].endswith("/index.json"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutObject")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def archived_and_expired(redis: Redis, s3: Any, build_id: str, lines: int = LINES) -> list[dict[str, Any]]:
    """A log of ``lines`` lines, archived, its stream gone; returns the archive's records."""
    await write_lines(redis, build_id, lines)
    result = await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    assert result is not None
    await redis.delete(logs_key(build_id))
    return archived_records(s3, build_id)


def line_offsets(s3: Any, build_id: str) -> list[int]:
    """The byte offset at which each NDJSON line of the archive starts."""
    body: bytes = s3.get_object(Bucket=BUCKET, Key=archive_key(build_id))["Body"].read()
    offsets, position = [], 0
    for line in body.splitlines(keepends=True):
        offsets.append(position)
        position += len(line)
    return offsets


async def test_the_index_records_the_offset_of_every_1000th_entry_and_the_log(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN an archived log of 5,001 entries
    records = await archived_and_expired(redis, s3, build_id)

    # WHEN its index is loaded
    index = load_index(s3, BUCKET, build_id)

    # THEN it holds entries 0, 1000, ... with the exact byte offsets of their lines
    assert index is not None
    offsets = line_offsets(s3, build_id)
    assert index.every == INDEX_EVERY
    assert list(index.offsets) == [(records[n]["id"], offsets[n]) for n in range(0, len(records), INDEX_EVERY)]
    assert (index.lines, index.last_id) == (len(records), records[-1]["id"])


async def test_a_page_from_the_middle_of_a_large_archive_is_one_range_get_read_only_so_far(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN an archived log and a cursor in its middle (entry 2,500)
    records = await archived_and_expired(redis, s3, build_id)
    offsets = line_offsets(s3, build_id)
    recording = RecordingS3(s3)

    # WHEN one page of 100 is read after the cursor
    page = read_archive_page(recording, BUCKET, build_id, after=records[2500]["id"], limit=100)

    # THEN it is the next 100 entries, read from entry 2,000's offset with one Range GET
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[2501:2601]]
    assert (page.next, page.done) == (records[2600]["id"], False)
    assert recording.gets == [
        (index_key(build_id), None),
        (archive_key(build_id), f"bytes={offsets[2000]}-"),
    ]
    # AND the body was closed early: about 600 lines and a read-ahead chunk were read, not the log
    log_body = recording.bodies[1]
    assert log_body.closed
    assert log_body.read_bytes <= offsets[2602] - offsets[2000] + 64 * 1024
    assert log_body.read_bytes < offsets[-1] // 4


@pytest.mark.parametrize(
    ("cursor_entry", "first_indexed"),
    [
        (0, 0),  # the first entry, which is indexed itself
        (999, 0),  # just before an indexed entry
        (1000, 1000),  # at an indexed entry
        (1001, 1000),  # just after an indexed entry
        (4999, 4000),
        (5000, 5000),  # the last indexed entry: the end entry
    ],
)
async def test_pages_start_at_the_nearest_indexed_entry_at_or_before_the_cursor(
    redis: Redis, s3: Any, build_id: str, cursor_entry: int, first_indexed: int
) -> None:
    # GIVEN an archived log
    records = await archived_and_expired(redis, s3, build_id)
    offsets = line_offsets(s3, build_id)
    recording = RecordingS3(s3)

    # WHEN a page is read after the cursor
    page = read_archive_page(recording, BUCKET, build_id, after=records[cursor_entry]["id"], limit=10)

    # THEN it holds exactly the entries after the cursor, read from the nearest indexed entry
    expected = records[cursor_entry + 1 : cursor_entry + 11]
    assert [entry.id for entry in page.entries] == [r["id"] for r in expected]
    assert page.done is (cursor_entry + 10 >= len(records) - 1)
    assert recording.gets[-1] == (archive_key(build_id), f"bytes={offsets[first_indexed]}-")


async def test_a_cursor_before_the_first_entry_reads_from_the_start(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log
    records = await archived_and_expired(redis, s3, build_id)
    recording = RecordingS3(s3)

    # WHEN the first page is read
    page = read_archive_page(recording, BUCKET, build_id, after="0-0", limit=5)

    # THEN it starts at byte 0 (no Range) and stops after the page
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[:5]]
    assert recording.gets[-1] == (archive_key(build_id), None)
    assert recording.bodies[-1].closed
    assert recording.bodies[-1].read_bytes < line_offsets(s3, build_id)[-1] // 4


async def test_without_an_index_the_archive_is_read_from_the_start(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archive without its index (archived before indexes existed)
    records = await archived_and_expired(redis, s3, build_id)
    s3.delete_object(Bucket=BUCKET, Key=index_key(build_id))
    recording = RecordingS3(s3)

    # WHEN a page from the middle is read
    page = read_archive_page(recording, BUCKET, build_id, after=records[2500]["id"], limit=100)

    # THEN the same entries come from a full read (no Range)
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[2501:2601]]
    assert recording.gets == [(index_key(build_id), None), (archive_key(build_id), None)]


@pytest.mark.parametrize("damage", ["shifted_offsets", "other_log", "past_the_end", "not_json"])
async def test_an_index_that_does_not_match_the_log_is_ignored(
    redis: Redis, s3: Any, build_id: str, damage: str
) -> None:
    # GIVEN an archive whose index does not describe it
    records = await archived_and_expired(redis, s3, build_id)
    document = orjson.loads(s3.get_object(Bucket=BUCKET, Key=index_key(build_id))["Body"].read())
    if damage == "shifted_offsets":
        document["offsets"] = [[entry_id, offset + 1] for entry_id, offset in document["offsets"]]
    elif damage == "other_log":
        document["last_id"] = "1-0"
    elif damage == "past_the_end":
        document["offsets"] = [[entry_id, offset * 1000] for entry_id, offset in document["offsets"]]
    body = b"{not json" if damage == "not_json" else orjson.dumps(document)
    s3.put_object(Bucket=BUCKET, Key=index_key(build_id), Body=body)

    # WHEN a page from the middle is read
    page = read_archive_page(RecordingS3(s3), BUCKET, build_id, after=records[2500]["id"], limit=100)

    # THEN it is still exactly the entries after the cursor
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[2501:2601]]


async def test_a_repeated_event_does_not_rewrite_the_index(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log, its index written once
    await write_lines(redis, build_id, 1500)
    await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    first = s3.head_object(Bucket=BUCKET, Key=index_key(build_id))
    puts: list[str] = []

    class RecordingPuts(RecordingS3):
        def put_object(self, **kwargs: Any) -> Any:
            puts.append(kwargs["Key"])
            return s3.put_object(**kwargs)

    # WHEN the same event arrives again, while the stream lives and after it expired
    await archive_logs(redis, RecordingPuts(s3), BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    await redis.delete(logs_key(build_id))
    await archive_logs(redis, RecordingPuts(s3), BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN nothing was written: the index is the first one
    assert puts == []
    again = s3.head_object(Bucket=BUCKET, Key=index_key(build_id))
    assert (again["ETag"], again["LastModified"]) == (first["ETag"], first["LastModified"])


async def test_a_failed_index_write_never_fails_archival_and_reads_fall_back(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN S3 refusing the index object
    await write_lines(redis, build_id, 1500)

    # WHEN the log is archived
    result = await archive_logs(redis, FailingIndexPut(s3), BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)

    # THEN the log is archived without an index and still readable page by page
    assert result is not None
    assert load_index(s3, BUCKET, build_id) is None
    await redis.delete(logs_key(build_id))
    records = archived_records(s3, build_id)
    page = read_archive_page(s3, BUCKET, build_id, after=records[1200]["id"], limit=3)
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[1201:1204]]


@pytest.mark.parametrize("stream_expired", [False, True])
async def test_a_repeated_event_repairs_a_missing_index(
    redis: Redis, s3: Any, build_id: str, stream_expired: bool
) -> None:
    # GIVEN a log archived while S3 refused its index
    await write_lines(redis, build_id, 2500)
    await archive_logs(redis, FailingIndexPut(s3), BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    assert load_index(s3, BUCKET, build_id) is None
    if stream_expired:
        await redis.delete(logs_key(build_id))
    # WHEN the event is delivered again
    await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    # THEN the index exists and points at the start of every 1,000th line of the object
    index = load_index(s3, BUCKET, build_id)
    assert index is not None
    body = s3.get_object(Bucket=BUCKET, Key=archive_key(build_id))["Body"].read()
    starts = [0, *(position + 1 for position, byte in enumerate(body[:-1]) if byte == 0x0A)]
    records = archived_records(s3, build_id)
    assert index.offsets == tuple((records[n]["id"], starts[n]) for n in range(0, len(records), INDEX_EVERY))
    assert (index.lines, index.last_id) == (len(records), records[-1]["id"])


async def test_a_filtered_page_scans_a_bounded_number_of_entries(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log where no entry matches the filter until the end
    records = await archived_and_expired(redis, s3, build_id)

    # WHEN a filtered page of 100 is read
    page = read_archive_page(s3, BUCKET, build_id, limit=100, keep=LogFilter(source="stderr"))

    # THEN it stops after MAX_FILTERED_PAGES pages' worth of entries, next moved past them
    assert page.entries == []
    assert (page.next, page.done) == (records[MAX_FILTERED_PAGES * 100 - 1]["id"], False)

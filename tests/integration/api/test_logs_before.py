"""read_logs_before: the tail, pages before an entry, ``prev`` to the start, filters — live and archived alike."""

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from buildlogs.api.logs import LogFilter, read_logs, read_logs_before
from buildlogs.archive.archiver import archive_logs
from buildlogs.archive.reader import MAX_FILTERED_PAGES
from buildlogs.keys import archive_key, index_key, logs_key
from buildlogs.stream.reader import LogPage
from tests.support.archive import BUCKET, RecordingS3, archived_records, write_build_log, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600
BULK = 2500  # + the realistic log: three index blocks and a partial one


def known() -> bool:
    return True


def unknown() -> bool:
    return False


async def before(redis: Redis, s3: Any, build_id: str, cursor: str | None, limit: int = 100, **filters: str) -> LogPage:
    return await read_logs_before(
        redis,
        s3,
        BUCKET,
        build_id,
        build_exists=known,
        before=cursor,
        limit=limit,
        log_filter=LogFilter(**filters) if filters else None,
    )


async def walk_back(redis: Redis, s3: Any, build_id: str, limit: int, **filters: str) -> tuple[list[str], int]:
    """Every entry id from the tail back to the start, following ``prev``; and the page count."""
    ids: list[str] = []
    page = await before(redis, s3, build_id, None, limit, **filters)
    pages = 1
    while True:
        ids[:0] = [entry.id for entry in page.entries]
        if page.prev is None:
            return ids, pages
        page = await before(redis, s3, build_id, page.prev, limit, **filters)
        pages += 1
        assert pages < 10_000, "prev never reached the start"


async def archived_log(redis: Redis, s3: Any, build_id: str, bulk: int = BULK) -> list[dict[str, Any]]:
    """A realistic log and ``bulk`` build lines, archived (the stream kept); the archive's records."""
    await write_build_log(redis, build_id)
    await write_lines(redis, build_id, bulk, phase="build")
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", ttl_seconds=TTL)
    assert result is not None
    return archived_records(s3, build_id)


# Requests whose answers must not depend on the source: (before: entry number or None, limit, filters).
QUERIES: list[tuple[int | None, int, dict[str, str]]] = [
    (None, 1, {}),
    (None, 100, {}),
    (None, 1000, {}),
    (0, 10, {}),
    (1, 10, {}),
    (999, 10, {}),
    (1000, 1000, {}),
    (1001, 5, {}),
    (2000, 1000, {}),
    (-1, 3, {}),  # before the end entry
    (None, 5, {"source": "stderr"}),
    (None, 3, {"phase": "install"}),
    (-1, 10, {"phase": "build", "source": "stdout"}),
    (2600, 2, {"phase": "install"}),
    (None, 10, {"phase": "healthcheck"}),  # nothing matches: the budget ends the scan
    (1500, 100, {"source": "system"}),
]


async def answers(redis: Redis, s3: Any, build_id: str, records: list[dict[str, Any]]) -> list[LogPage]:
    pages = []
    for position, limit, filters in QUERIES:
        cursor = None if position is None else records[position]["id"]
        pages.append(await before(redis, s3, build_id, cursor, limit, **filters))
    return pages


async def test_live_and_archived_answers_are_identical_with_and_without_the_index(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN a log of ~2,600 entries, archived while its stream still lives
    records = await archived_log(redis, s3, build_id)
    assert len(records) > 2600

    # WHEN the same backward pages are read from the stream, from the archive once the stream
    # is gone, and from the archive without its index
    live = await answers(redis, s3, build_id, records)
    live_walk = await walk_back(redis, s3, build_id, 333)
    await redis.delete(logs_key(build_id))
    archived = await answers(redis, s3, build_id, records)
    archived_walk = await walk_back(redis, s3, build_id, 333)
    s3.delete_object(Bucket=BUCKET, Key=index_key(build_id))
    unindexed = await answers(redis, s3, build_id, records)
    unindexed_walk = await walk_back(redis, s3, build_id, 333)

    # THEN every answer is the same, and the walk back is the whole log
    assert archived == live
    assert unindexed == live
    assert archived_walk == live_walk == unindexed_walk
    assert live_walk[0] == [record["id"] for record in records]
    assert any(page.entries for page in live)


async def test_the_tail_is_the_last_entries_with_prev_and_next_at_the_end(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log, the stream gone
    records = await archived_log(redis, s3, build_id)
    await redis.delete(logs_key(build_id))

    # WHEN its tail of 50 is read
    page = await before(redis, s3, build_id, None, 50)

    # THEN it is the last 50 entries, oldest first, ending with the end entry
    assert [entry.id for entry in page.entries] == [record["id"] for record in records[-50:]]
    assert page.entries[-1].event == "end"
    assert page.prev == records[-50]["id"]
    assert (page.next, page.done) == (records[-1]["id"], True)
    # AND a forward reader continuing from next has nothing left
    forward = await read_logs(redis, s3, BUCKET, build_id, build_exists=known, after=page.next)
    assert (forward.entries, forward.done) == ([], True)


async def test_the_tail_of_a_running_build_is_not_done_and_next_follows_it(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN a build still writing (no end entry)
    await write_build_log(redis, build_id)
    await write_lines(redis, build_id, 30)

    # WHEN the tail is read, even with a filter that keeps nothing of it
    page = await before(redis, s3, build_id, None, 10)
    filtered = await before(redis, s3, build_id, None, 10, phase="provision")

    # THEN next is the last entry and not done, so following it forward sees what comes next
    raw: Any = await redis.xrevrange(logs_key(build_id), count=1)
    last = raw[0][0]
    assert (page.next, page.done) == (last, False)
    assert (filtered.next, filtered.done) == (last, False)
    assert [entry.text for entry in page.entries][-1] == f"{29:08d} " + "x" * 71
    assert (filtered.entries, filtered.prev is not None) == ([], True)  # provision is > 100 entries back
    await write_lines(redis, build_id, 1, phase="start")
    forward = await read_logs(redis, s3, BUCKET, build_id, build_exists=known, after=page.next)
    assert [entry.phase for entry in forward.entries] == ["start"]


@pytest.mark.parametrize("archived", [False, True], ids=["live", "archived"])
async def test_before_gives_the_entries_strictly_before_with_next_at_the_newest(
    redis: Redis, s3: Any, build_id: str, archived: bool
) -> None:
    # GIVEN a log, live or archived
    records = await archived_log(redis, s3, build_id)
    if archived:
        await redis.delete(logs_key(build_id))

    # WHEN 20 entries before entry 1,500 are read
    page = await before(redis, s3, build_id, records[1500]["id"], 20)

    # THEN they are entries 1,480..1,499 with prev at the oldest and next at the newest
    assert [entry.id for entry in page.entries] == [record["id"] for record in records[1480:1500]]
    assert (page.prev, page.next, page.done) == (records[1480]["id"], records[1499]["id"], False)
    # AND before the first entry there is nothing, and nothing to continue with
    first = await before(redis, s3, build_id, records[0]["id"], 20)
    assert first == LogPage([], "0-0", False, None)
    # AND a page that reaches the first entry has no prev
    start = await before(redis, s3, build_id, records[3]["id"], 20)
    assert [entry.id for entry in start.entries] == [record["id"] for record in records[:3]]
    assert start.prev is None
    # AND a cursor past the end (ids are cursors, not only entries) ends with the end entry
    past = await before(redis, s3, build_id, "99999999999999-0", 2)
    assert [entry.id for entry in past.entries] == [record["id"] for record in records[-2:]]
    assert past.done is True


@pytest.mark.parametrize("archived", [False, True], ids=["live", "archived"])
async def test_prev_walks_back_to_the_start_gap_free_and_duplicate_free(
    redis: Redis, s3: Any, build_id: str, archived: bool
) -> None:
    # GIVEN a log, live or archived
    records = await archived_log(redis, s3, build_id)
    if archived:
        await redis.delete(logs_key(build_id))

    # WHEN it is walked back 7 entries at a time (pages straddle every index block boundary)
    ids, pages = await walk_back(redis, s3, build_id, 7)

    # THEN every entry was seen once, in order, and the last page had no prev
    assert ids == [record["id"] for record in records]
    assert pages == -(-len(records) // 7)


@pytest.mark.parametrize("archived", [False, True], ids=["live", "archived"])
async def test_filters_keep_matching_entries_and_a_budget_keeps_the_scan_short(
    redis: Redis, s3: Any, build_id: str, archived: bool
) -> None:
    # GIVEN a log, live or archived
    records = await archived_log(redis, s3, build_id)
    if archived:
        await redis.delete(logs_key(build_id))

    # WHEN it is walked back by stderr lines, by install lines, and the tail is asked for a phase
    # that does not exist
    stderr, _ = await walk_back(redis, s3, build_id, 1, source="stderr")
    install, _ = await walk_back(redis, s3, build_id, 2, phase="install")
    nothing = await before(redis, s3, build_id, None, 10, phase="healthcheck")

    # THEN the walks found exactly the matching entries
    assert stderr == [r["id"] for r in records if r["source"] == "stderr"]
    assert install == [r["id"] for r in records if r["phase"] == "install"]
    assert len(stderr) == 2
    # AND the empty page scanned exactly its budget: prev is just past it, next is the log's end
    budget = MAX_FILTERED_PAGES * 10
    assert nothing.entries == []
    assert nothing.prev == records[-budget]["id"]
    assert (nothing.next, nothing.done) == (records[-1]["id"], True)
    # AND continuing from prev never stalls: it reaches the start
    walked, pages = await walk_back(redis, s3, build_id, 10, phase="healthcheck")
    assert walked == []
    assert pages == -(-len(records) // budget)


async def test_an_archived_page_reads_only_index_blocks_with_range_gets(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log of ~10,000 entries, the stream gone
    records = await archived_log(redis, s3, build_id, bulk=10_000)
    await redis.delete(logs_key(build_id))
    recording = RecordingS3(s3)

    # WHEN the tail and a page in the middle that straddles an index block are read
    tail = await before(redis, recording, build_id, None, 100)
    middle = await before(redis, recording, build_id, records[5010]["id"], 100)

    # THEN each read the index and Range GETs of single blocks only (never the whole object)
    assert [entry.id for entry in tail.entries] == [r["id"] for r in records[-100:]]
    assert [entry.id for entry in middle.entries] == [r["id"] for r in records[4910:5010]]
    log_gets = [rng for key, rng in recording.gets if key == archive_key(build_id)]
    assert all(rng is not None for rng in log_gets)
    assert len(log_gets) <= 4
    assert sum(body.read_bytes for body in recording.bodies) < len(records) * 120 // 2


async def test_a_stale_index_is_ignored_and_the_answer_stays_right(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log whose index describes another object (offsets shifted by one byte)
    records = await archived_log(redis, s3, build_id)
    await redis.delete(logs_key(build_id))
    raw = s3.get_object(Bucket=BUCKET, Key=index_key(build_id))["Body"].read()
    document = orjson.loads(raw)
    document["offsets"] = [[entry_id, offset + 1 if offset else 0] for entry_id, offset in document["offsets"]]
    s3.put_object(Bucket=BUCKET, Key=index_key(build_id), Body=orjson.dumps(document))

    # WHEN pages are read backwards
    page = await before(redis, s3, build_id, records[2222]["id"], 30)

    # THEN the answer is the one from the log itself
    assert [entry.id for entry in page.entries] == [r["id"] for r in records[2192:2222]]


async def test_an_empty_log_and_an_unknown_build(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a known build that has written nothing, and an unknown one (neither has a stream or archive)
    # WHEN their tails are read
    empty = await before(redis, s3, build_id, None, 10)
    # THEN the known one is an empty page to follow from the start, the unknown one a LookupError
    assert empty == LogPage([], "0-0", False, None)
    with pytest.raises(LookupError):
        await read_logs_before(redis, s3, BUCKET, build_id, build_exists=unknown, before=None)
    with pytest.raises(LookupError):
        await read_logs_before(redis, s3, "", build_id, build_exists=unknown, before="5-0")


@pytest.mark.parametrize(
    ("build", "cursor", "limit"),
    [
        ("bad id", None, 10),
        ("../x", None, 10),
        ("ok", "abc", 10),
        ("ok", "1-2-3", 10),
        ("ok", "0-18446744073709551616", 10),
        ("ok", None, 0),
        ("ok", None, 1001),
        ("ok", "5-0", -1),
    ],
)
async def test_bad_ids_and_limits_are_value_errors(
    redis: Redis, s3: Any, build: str, cursor: str | None, limit: int
) -> None:
    with pytest.raises(ValueError, match=r"."):
        await read_logs_before(redis, s3, BUCKET, build, build_exists=known, before=cursor, limit=limit)

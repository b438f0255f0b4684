"""summarise_log (GET /builds/{id}'s stages): from the index, the archive, or the live stream and its cache."""

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from buildlogs.api.logs import summarise_log
from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import index_key, logs_key, summary_key
from buildlogs.stream.entries import entry_record
from buildlogs.stream.summary import Summariser, feed_all
from tests.support.archive import BUCKET, RecordingS3, archived_records, write_build_log, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup", "summary_cleanup")]

TTL = 600


@pytest.fixture
async def summary_cleanup(redis: Redis, build_id: str) -> AsyncIterator[None]:
    yield
    await redis.delete(summary_key(build_id))


async def test_the_summary_from_the_index_equals_the_summary_of_the_full_log(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN a realistic log (stages, failures, stdout) with bulk lines, summarised while live
    await write_build_log(redis, build_id)
    await write_lines(redis, build_id, 2500, phase="build")
    live = await summarise_log(redis, s3, "", build_id, finished=True)
    await archive_logs(redis, s3, BUCKET, build_id, "FAILED", ttl_seconds=TTL)
    await redis.delete(logs_key(build_id))
    recording = RecordingS3(s3)

    # WHEN it is summarised after the stream expired
    archived = await summarise_log(redis, recording, BUCKET, build_id, finished=True)

    # THEN the index alone answered, with the summary of the whole log
    assert recording.gets == [(index_key(build_id), None)]
    full = feed_all(Summariser(), archived_records(s3, build_id)).result(True, "archive")
    assert archived == full
    assert (archived.stages, archived.preview_url) == (live.stages, live.preview_url)
    assert [stage.name for stage in archived.stages] == ["provision", "install", "build"]


async def test_a_finished_build_is_summarised_from_its_index_while_the_stream_still_lives(
    redis: Redis, s3: Any, build_id: str
) -> None:
    # GIVEN an archived build whose stream has not expired yet
    await write_build_log(redis, build_id)
    await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    stream = await summarise_log(redis, s3, "", build_id, finished=True)

    # WHEN it is summarised
    summary = await summarise_log(redis, s3, BUCKET, build_id, finished=True)

    # THEN the index answered, with what the stream says
    assert summary.source == "archive"
    assert (summary.stages, summary.preview_url) == (stream.stages, stream.preview_url)


async def test_without_an_index_the_summary_reads_the_archive(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN an archived log without index, the stream gone
    await write_build_log(redis, build_id)
    live = await summarise_log(redis, s3, "", build_id, finished=True)
    await archive_logs(redis, s3, BUCKET, build_id, "SUCCEEDED", ttl_seconds=TTL)
    await redis.delete(logs_key(build_id), summary_key(build_id))
    s3.delete_object(Bucket=BUCKET, Key=index_key(build_id))

    # WHEN it is summarised
    summary = await summarise_log(redis, s3, BUCKET, build_id, finished=True)

    # THEN the full archive gives the same summary
    assert summary.source == "archive"
    assert (summary.stages, summary.preview_url) == (live.stages, live.preview_url)


async def test_a_live_summary_reads_only_the_entries_added_since_the_previous_request(
    redis: Redis, build_id: str
) -> None:
    # GIVEN a live log of more than a page, summarised once
    await write_build_log(redis, build_id)
    await write_lines(redis, build_id, 1500)
    await summarise_log(redis, None, "", build_id, finished=False)
    covered = orjson.loads(await redis.get(summary_key(build_id)) or b"{}")["after"]
    await write_lines(redis, build_id, 10, phase="start")
    await redis.xadd(logs_key(build_id), {"ts": 5, "source": "system", "phase": "start", "event": "stage_start"})
    ranges: list[str] = []
    real_xrange = redis.xrange

    async def recording_xrange(name: str, min: str = "-", max: str = "+", count: int | None = None) -> Any:
        ranges.append(min)
        return await real_xrange(name, min=min, max=max, count=count)

    redis.xrange = recording_xrange  # type: ignore[method-assign]

    # WHEN it is summarised again
    summary = await summarise_log(redis, None, "", build_id, finished=False)

    # THEN only entries after the cached cursor were read, and the result equals a full scan
    assert ranges == [f"({covered}"]
    full = feed_all(Summariser(), [_record(e) for e in await real_xrange(logs_key(build_id))])
    assert summary == full.result(False, "stream")
    assert [(s.name, s.status) for s in summary.stages][-1] == ("start", "running")


async def test_a_live_summary_reads_a_bounded_number_of_pages_per_request(
    redis: Redis, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a live log of 2,500 lines then a stage start, and a budget of 2 pages per request
    monkeypatch.setattr("buildlogs.api.logs.MAX_SUMMARY_PAGES", 2)
    await write_lines(redis, build_id, 2500)
    await redis.xadd(logs_key(build_id), {"ts": 5, "source": "system", "phase": "start", "event": "stage_start"})

    # WHEN it is summarised twice
    first = await summarise_log(redis, None, "", build_id, finished=False)
    second = await summarise_log(redis, None, "", build_id, finished=False)

    # THEN the first request stopped after 2,000 entries; the second went on and caught up
    assert first.stages == []
    assert [(s.name, s.status) for s in second.stages] == [("start", "running")]


async def test_a_log_shorter_than_a_page_is_not_cached(redis: Redis, build_id: str) -> None:
    # GIVEN a small live log
    await write_build_log(redis, build_id)

    # WHEN it is summarised
    summary = await summarise_log(redis, None, "", build_id, finished=False)

    # THEN its stages are there and no cache key was written
    assert [stage.name for stage in summary.stages] == ["provision", "install", "build"]
    assert await redis.exists(summary_key(build_id)) == 0


async def test_an_unreadable_summary_cache_is_rebuilt(redis: Redis, build_id: str) -> None:
    # GIVEN a live log and a corrupt cache entry
    await write_build_log(redis, build_id)
    await redis.set(summary_key(build_id), b"{broken")

    # WHEN it is summarised
    summary = await summarise_log(redis, None, "", build_id, finished=False)

    # THEN the whole stream was read again
    assert [stage.name for stage in summary.stages] == ["provision", "install", "build"]


def _record(entry: Any) -> dict[str, Any]:
    return entry_record(entry[0], entry[1])

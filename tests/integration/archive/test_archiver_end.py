"""The ``end`` entry stays the one and last entry when a stage outlives its execution."""

from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.archive.archiver import archive_logs
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer
from tests.support.archive import BUCKET, KillRecorder, archived_records, stream_records, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]


async def test_a_stage_outliving_an_aborted_run_never_writes_past_end(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a stage streaming when its execution is aborted and the archiver closes the log
    stage = LogStreamer(redis, build_id, "install", flush_lines=10, flush_interval_ms=60_000)
    await stage.on_stdout("".join(f"line {i}\n" for i in range(10)))
    first = await archive_logs(redis, s3, BUCKET, build_id, "ABORTED", kill_sandbox=KillRecorder(), ttl_seconds=600)
    # WHEN the stage, its sandbox gone, goes on: lines, its failure, stage_end, final flush
    await stage.on_stdout("".join(f"late {i}\n" for i in range(25)))
    await stage.write_event("BUILD FAILED: the sandbox is gone", event="build_failed")
    await stage.end_stage(exit_code=1)
    await stage.close()
    # AND EventBridge delivers the event again
    second = await archive_logs(redis, s3, BUCKET, build_id, "ABORTED", kill_sandbox=KillRecorder(), ttl_seconds=600)
    # THEN the stream ends with its only end entry, nothing of the stage after it
    stream = await stream_records(redis, build_id)
    assert [r.get("event") for r in stream if r.get("event") == "end"] == ["end"]
    assert stream[-1]["event"] == "end"
    assert [r["text"] for r in stream[-2:]] == ["BUILD ABORTED", "end of log: ABORTED"]
    assert not any(r["text"].startswith("late") for r in stream)
    # AND the archive is the same object both times, ending with that end
    assert first is not None
    assert second is not None
    assert (second.lines, second.bytes, second.uploaded) == (first.lines, first.bytes, False)
    assert archived_records(s3, build_id) == stream


async def test_late_lines_not_yet_deleted_do_not_count_or_reopen_the_log(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a closed log with a late line a stage added after end (before it learned of the end)
    await write_lines(redis, build_id, 20)
    first = await archive_logs(redis, s3, BUCKET, build_id, "TIMED_OUT", kill_sandbox=KillRecorder(), ttl_seconds=600)
    assert first is not None
    await redis.xadd(f"job:{{{build_id}}}:logs", {"ts": 1, "source": "stdout", "phase": "build", "text": "too late"})
    # WHEN the event is delivered again and a reader follows the log
    second = await archive_logs(redis, s3, BUCKET, build_id, "TIMED_OUT", kill_sandbox=KillRecorder(), ttl_seconds=600)
    page = await LogReader(redis).read(build_id)
    # THEN no second end is written, the archive is unchanged, and readers stop at end
    stream = await stream_records(redis, build_id)
    assert sum(r.get("event") == "end" for r in stream) == 1
    assert second is not None
    assert (second.lines, second.uploaded) == (first.lines, False)
    assert page.done
    assert page.entries[-1].event == "end"
    assert all(e.text != "too late" for e in page.entries)


async def test_an_emptied_stream_ahead_of_the_clock_still_gets_its_end(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a stream whose entries were all deleted, its last id ahead of this clock
    key = f"job:{{{build_id}}}:logs"
    future = await redis.xadd(key, {"ts": 1, "source": "stdout", "phase": "build", "text": "x"}, id="99999999999999-5")
    await redis.xdel(key, future)
    # WHEN the build is archived
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", kill_sandbox=KillRecorder(), ttl_seconds=600)
    # THEN the end entry was appended after that id and recorded, and the archive holds it
    stream = await stream_records(redis, build_id)
    assert [r["event"] for r in stream] == ["end"]
    assert stream[0]["id"] == "99999999999999-6"
    assert result is not None
    assert result.lines == 1
    assert archived_records(s3, build_id) == stream

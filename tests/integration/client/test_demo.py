"""`make run`'s demo: a real subprocess streamed through Redis and tailed live."""

import asyncio

import pytest
from redis.asyncio import Redis

from buildlogs.client import demo
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer
from tests.support.streams import entries


async def test_the_example_build_is_streamed_and_tailed(
    redis: Redis, build_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the demo's writer and a live tail on the same stream (real Redis, small line limit)
    streamer = LogStreamer(redis, build_id, "build", max_line_bytes=1000)
    # WHEN the example runs while the tail follows
    printed, exit_code = await asyncio.gather(
        demo.tail(LogReader(redis), build_id, colour=False), demo.run_example(streamer)
    )
    # THEN the tail printed every entry, ending with the end entry
    found = await entries(redis, build_id)
    assert printed == len(found)
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("BUILD FAILED")
    # AND the stream holds what a person watching needs, tagged by source
    assert exit_code == 1
    texts = {(e.source, e.text) for e in found}
    assert ("stdout", "downloading packages [##########] 100%") in texts  # only the last \r state
    assert not any("  0%" in t for _, t in texts)
    assert ("stderr", "npm WARN deprecated inflight@1.0.6: not supported, leaks memory") in texts
    assert ("stdout", "héllo wörld ✓ — unicode survives byte-chunked reads") in texts
    long_line = next(t for _, t in texts if t.startswith("minified bundle"))
    assert long_line.endswith(f"…[+{len('minified bundle: ') + 20_000 - 1000} bytes]")
    # the last line had no newline and the process then failed: it is still there, before the failure
    stdout_lines = [e.text for e in found if e.source == "stdout"]
    assert stdout_lines[-1] == "build failed after 1 error"
    events = [e.event for e in found if e.source == "system"]
    assert events == ["stage_start", "build_failed", "stage_end", "end"]
    assert found[-1].status == "FAILED"  # type: ignore[attr-defined]

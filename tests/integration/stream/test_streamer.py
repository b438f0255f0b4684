"""LogStreamer against a real Redis: lines and events, batching, the flush timer, trimming, outages."""

import asyncio
import math
import socket
import threading
from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.clients import create_redis
from buildlogs.keys import MetaField, logs_key, meta_key
from buildlogs.settings import Settings
from buildlogs.stream import writer as writer_module
from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer
from tests.support.redis_servers import RedisServer
from tests.support.streams import CountingRedis, entries, lines


async def test_chunks_become_masked_cut_lines_tagged_with_source_and_phase(redis: Redis, build_id: str) -> None:
    # GIVEN a streamer with a secret and a 64-byte line limit
    streamer = LogStreamer(redis, build_id, "install", secrets=["s3cr3t"], max_line_bytes=64, flush_interval_ms=60_000)
    # WHEN interleaved partial chunks arrive on both sources, one line too long, one unfinished
    await streamer.on_stdout("out-")
    await streamer.on_stderr("err-")
    await streamer.on_stdout("line s3cr3t\n" + "x" * 100 + "\nprogress 10%\rprogress 100%")
    await streamer.on_stderr(b"line \xff\n")
    await streamer.flush()
    # THEN each source's lines are whole, shaped (masked, cut, \r, UTF-8) and tagged
    found = await entries(redis, build_id)
    assert [(e.source, e.phase, e.text) for e in found] == [
        ("stdout", "install", "out-line ***"),
        ("stdout", "install", "x" * 64 + "…[+36 bytes]"),
        ("stderr", "install", "err-line \ufffd"),
        ("stdout", "install", "progress 100%"),
    ]


async def test_a_partial_line_waits_for_its_newline_until_flush(redis: Redis, build_id: str) -> None:
    # GIVEN a streamer writing every line at once, and a line without its newline
    streamer = LogStreamer(redis, build_id, "install", flush_lines=1, flush_interval_ms=60_000)
    await streamer.on_stdout("done\nstill typ")
    # THEN only the complete line is written
    assert await lines(redis, build_id) == [("stdout", "done")]
    # WHEN the stage ends (flush in finally)
    await streamer.flush()
    # THEN the partial line is written too
    assert await lines(redis, build_id) == [("stdout", "done"), ("stdout", "still typ")]


async def test_stage_writes_end_of_previous_and_start_banner(redis: Redis, build_id: str) -> None:
    # GIVEN a streamer in its first stage with a pending partial line
    streamer = LogStreamer(redis, build_id, "install", flush_interval_ms=60_000)
    await streamer.stage("install")
    await streamer.on_stdout("added 3 packages")
    # WHEN the next stage begins
    await streamer.stage("build")
    await streamer.on_stdout("compiled\n")
    await streamer.end_stage(exit_code=0)
    # THEN the partial line lands in install, then stage_end(install), stage_start(build)
    found = await entries(redis, build_id)
    assert [(e.phase, e.source, e.event, e.text) for e in found] == [
        ("install", "system", "stage_start", "--- Installing dependencies ---"),
        ("install", "stdout", None, "added 3 packages"),
        ("install", "system", "stage_end", "install finished"),
        ("build", "system", "stage_start", "--- Building project ---"),
        ("build", "stdout", None, "compiled"),
        ("build", "system", "stage_end", "build finished"),
    ]
    ends = [e for e in found if e.event == "stage_end"]
    assert all(isinstance(e.duration_ms, int) and e.duration_ms >= 0 for e in ends)  # type: ignore[attr-defined]
    assert ends[-1].exit_code == 0  # type: ignore[attr-defined]
    assert streamer.phase == "build"


async def test_write_event_keeps_order_masks_and_keeps_extra_fields(redis: Redis, build_id: str) -> None:
    # GIVEN a buffered line and a streamer knowing a secret
    streamer = LogStreamer(redis, build_id, "install", secrets=["s3cr3t-T0KEN"], flush_interval_ms=60_000)
    await streamer.on_stdout("npm ERR! missing script\n")
    # WHEN an event is written with extra fields, one of them None
    await streamer.write_event("BUILD FAILED: s3cr3t-T0KEN", event="build_failed", exit_code=1, note=None)
    # THEN it follows the buffered line at once, masked, with its non-None fields
    found = await entries(redis, build_id)
    assert [(e.source, e.text) for e in found] == [
        ("stdout", "npm ERR! missing script"),
        ("system", "BUILD FAILED: ***"),
    ]
    assert found[1].event == "build_failed"
    assert found[1].to_record()["exit_code"] == 1
    assert "note" not in found[1].to_record()


def test_an_invalid_build_id_is_rejected_before_any_key() -> None:
    # GIVEN a client that fails on any use WHEN a streamer is made for a hostile id
    # THEN the id is rejected before the client is touched
    for hostile in ("../x", "a/b", "x" * 300, "", "a b", "{tag}"):
        with pytest.raises(ValueError, match="invalid build id"):
            LogStreamer(object(), hostile, "install")  # type: ignore[arg-type]


async def test_lines_are_written_in_batches_one_round_trip_each(redis: Redis, build_id: str) -> None:
    # GIVEN a streamer batching 100 lines and a clock that never fires within the test
    counting = CountingRedis(redis)
    streamer = LogStreamer(counting, build_id, "install", flush_lines=100, flush_interval_ms=60_000)  # type: ignore[arg-type]
    # WHEN 1,050 lines arrive in 4 KiB chunks
    payload = "".join(f"line {i:05d} {'.' * 60}\n" for i in range(1050))
    for start in range(0, len(payload), 4096):
        await streamer.on_stdout(payload[start : start + 4096])
    full_batches = counting.round_trips
    await streamer.flush(check_trim=False)
    # THEN full batches went out as the lines arrived, the rest in one round trip at flush
    assert full_batches == 10
    assert counting.round_trips == math.ceil(1050 / 100)
    assert all(n <= 100 + 1 for n in counting.commands_per_trip)  # + the has-the-log-ended check
    texts = [t for _, t in await lines(redis, build_id)]
    assert texts == [f"line {i:05d} {'.' * 60}" for i in range(1050)]


async def test_a_line_before_a_silent_step_is_flushed_by_time(redis: Redis, build_id: str) -> None:
    # GIVEN a streamer that batches 500 lines or 20 ms
    streamer = LogStreamer(redis, build_id, "install", flush_lines=500, flush_interval_ms=20)
    # WHEN one line arrives and then nothing more (a long silent step follows)
    await streamer.on_stdout("about to run a silent step\n")
    # THEN a reader blocked on the stream receives it without any further input or flush()
    reply: Any = await redis.xread({logs_key(build_id): "0-0"}, block=5000)
    assert reply, "the line never reached the stream"
    [(_key, [(_id, fields)])] = reply
    assert fields["text"] == "about to run a silent step"
    await streamer.close()


async def test_the_stream_is_trimmed_keeping_the_newest_with_one_notice(redis: Redis, build_id: str) -> None:
    # GIVEN a stream capped at about 1,000 entries
    first = LogStreamer(redis, build_id, "install", maxlen=1000, flush_interval_ms=60_000)
    # WHEN one stage writes 5,000 lines
    await first.on_stdout("".join(f"install {i}\n" for i in range(5000)))
    await first.flush()
    after_first = await entries(redis, build_id)
    # THEN the newest lines are kept, ending with the last one, plus one truncated notice
    texts = [e.text for e in after_first if e.source == "stdout"]
    assert texts[-1] == "install 4999"
    assert texts == [f"install {i}" for i in range(5000 - len(texts), 5000)]
    assert len(after_first) <= 1000 + 200  # approximate trimming: whole radix nodes
    notices = [e for e in after_first if e.event == "truncated"]
    assert len(notices) == 1
    assert notices[0].dropped == 5000 - len(texts)  # type: ignore[attr-defined]
    # WHEN a later stage writes 3,000 more lines
    second = LogStreamer(redis, build_id, "build", maxlen=1000, flush_interval_ms=60_000)
    await second.on_stdout("".join(f"build {i}\n" for i in range(3000)))
    await second.flush()
    final = await entries(redis, build_id)
    # THEN there is still exactly one notice, near the end, counting every line dropped so far
    notices = [e for e in final if e.event == "truncated"]
    kept = [e for e in final if e.source == "stdout"]
    assert len(notices) == 1
    assert final[-1].event == "truncated"
    assert notices[0].dropped == 8000 - len(kept)  # type: ignore[attr-defined]
    # AND flushing again with nothing new trimmed leaves that notice as it is
    await second.on_stdout("")
    await second.close()
    assert [e.id for e in await entries(redis, build_id) if e.event == "truncated"] == [notices[0].id]


async def test_no_notice_when_nothing_was_trimmed(redis: Redis, build_id: str) -> None:
    streamer = LogStreamer(redis, build_id, "install", maxlen=1000)
    await streamer.on_stdout("".join(f"l{i}\n" for i in range(500)))
    await streamer.close()
    assert not [e for e in await entries(redis, build_id) if e.event == "truncated"]


async def test_redis_outage_never_fails_and_the_loss_is_reported(
    build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Redis of our own (persisting, so its stream survives the restart), and a streamer
    # that probes a down Redis on every batch instead of every 0.5 s
    monkeypatch.setattr(writer_module, "OUTAGE_PROBE_INTERVAL_S", 0.0)
    server = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always").start()
    client = Redis.from_url(server.url, decode_responses=True, socket_connect_timeout=0.5)
    try:
        streamer = LogStreamer(client, build_id, "install", flush_lines=50, flush_interval_ms=60_000)
        await streamer.on_stdout("".join(f"before {i}\n" for i in range(100)))
        # WHEN the server stops mid-stream and 10,000 lines arrive
        server.stop()
        for i in range(200):
            await streamer.on_stdout("".join(f"during {i}.{j}\n" for j in range(50)))
            # THEN the caller never sees an error and memory stays bounded
            assert streamer.buffered_lines <= 50
        assert streamer.lines_dropped == 10_000
        # WHEN the server is back and more lines arrive
        server.start()
        await streamer.on_stdout("".join(f"after {i}\n" for i in range(50)))
        await streamer.flush()
        found = await entries(client, build_id)
    finally:
        await client.aclose()
        server.cleanup()
    # THEN the stream holds the lines before, one loss report with the exact count, the lines after
    texts = [e.text for e in found]
    assert texts[:100] == [f"before {i}" for i in range(100)]
    report = found[100]
    assert (report.event, report.reason, report.dropped) == ("truncated", "redis_unavailable", 10_000)  # type: ignore[attr-defined]
    assert texts[101:] == [f"after {i}" for i in range(50)]


async def test_the_final_flush_after_an_outage_keeps_the_last_lines_and_reports_the_loss(build_id: str) -> None:
    # GIVEN a streamer with the default outage probing (at most every 0.5 s) on a Redis of our own
    server = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always").start()
    client = Redis.from_url(server.url, decode_responses=True, socket_connect_timeout=0.5)
    try:
        streamer = LogStreamer(client, build_id, "install", flush_lines=10, flush_interval_ms=60_000)
        await streamer.on_stdout("".join(f"before {i}\n" for i in range(10)))
        # WHEN Redis goes away for 50 lines, comes back, and the stage ends with its real error
        server.stop()
        await streamer.on_stdout("".join(f"during {i}\n" for i in range(50)))
        server.start()
        await streamer.on_stdout("FATAL: the real error\n")
        await streamer.close()  # the stage's finally: no more output follows
        found = await entries(client, build_id)
    finally:
        await client.aclose()
        server.cleanup()
    # THEN the last line and the loss report are in the stream, right after the lines before
    assert [e.text for e in found[:10]] == [f"before {i}" for i in range(10)]
    assert (found[10].event, found[10].reason, found[10].dropped) == ("truncated", "redis_unavailable", 50)  # type: ignore[attr-defined]
    assert [e.text for e in found[11:]] == ["FATAL: the real error"]


async def test_lone_surrogates_in_text_chunks_never_reach_the_caller(redis: Redis, build_id: str) -> None:
    # GIVEN text chunks with a lone surrogate (a str from a misbehaving decoder)
    streamer = LogStreamer(redis, build_id, "build", flush_lines=2)
    # WHEN they are streamed with good lines around them
    await streamer.on_stdout("ok 1\nbad \ud800 char\nok 2\n")
    await streamer.write_event("event \udc00 text")
    await streamer.close()
    # THEN nothing raised, no line was lost, the bad character is replaced
    assert [t for _, t in await lines(redis, build_id)] == ["ok 1", "bad \ufffd char", "ok 2"]
    assert [e.text for e in await entries(redis, build_id) if e.source == "system"] == ["event \ufffd text"]


async def test_nothing_is_written_after_the_end_entry(redis: Redis, build_id: str) -> None:
    # GIVEN a stage still streaming when the archiver closes the log (an aborted execution)
    streamer = LogStreamer(redis, build_id, "install", flush_lines=5, flush_interval_ms=60_000)
    await streamer.on_stdout("".join(f"before {i}\n" for i in range(5)))
    end_id = await redis.xadd(
        logs_key(build_id),
        {
            "ts": 1,
            "source": "system",
            "phase": "install",
            "text": "end of log: ABORTED",
            "event": "end",
            "status": "ABORTED",
        },
    )
    await redis.hset(meta_key(build_id), MetaField.END_ID, end_id)
    # WHEN the stage goes on writing lines, its failure and its stage_end
    await streamer.on_stdout("".join(f"after {i}\n" for i in range(12)))
    await streamer.write_event("BUILD FAILED: sandbox gone", event="build_failed")
    await streamer.end_stage(exit_code=1)
    await streamer.close()
    # THEN the end entry is still the last and the only one, and readers stop there
    found = await entries(redis, build_id)
    assert [e.text for e in found] == [f"before {i}" for i in range(5)] + ["end of log: ABORTED"]
    page = await LogReader(redis).read(build_id)
    assert page.done
    assert page.entries[-1].id == end_id


async def test_a_redis_that_never_answers_cannot_hold_a_stage(build_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a "Redis" that accepts connections and never answers (a hung server, a black hole)
    monkeypatch.setattr(writer_module, "WRITE_TIMEOUT_S", 0.2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.extend(server.accept()[0] for _ in range(100)), daemon=True).start()
    client = create_redis(Settings(redis_url=f"redis://127.0.0.1:{server.getsockname()[1]}/0"))
    try:
        streamer = LogStreamer(client, build_id, "install")
        # WHEN a stage streams a line and ends
        await streamer.on_stdout("a line\n")
        await asyncio.wait_for(streamer.close(), timeout=30)
    finally:
        server.close()
    # THEN it returned (each attempt is bounded), with the line counted as lost, not raised
    assert streamer.lines_dropped == 1
    assert accepted, "the streamer never even connected"


async def test_a_failed_batch_gets_one_attempt_then_outage_mode(build_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the real client factory pointed at a port nobody listens on, whose pipelines count
    # their executions, and a probe interval longer than the test
    monkeypatch.setattr(writer_module, "OUTAGE_PROBE_INTERVAL_S", 3600.0)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    client = create_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    counting = CountingRedis(client)  # type: ignore[arg-type]
    try:
        streamer = LogStreamer(counting, build_id, "install", flush_lines=10, flush_interval_ms=60_000)  # type: ignore[arg-type]
        # WHEN a full batch is written
        await streamer.on_stdout("".join(f"a{i}\n" for i in range(10)))
        # THEN it was attempted once (the client's own retries happen inside that attempt)
        assert counting.round_trips == 1
        assert streamer.lines_dropped == 10
        # WHEN more batches arrive during the outage
        await streamer.on_stdout("".join(f"b{i}\n" for i in range(30)))
        # THEN they are dropped without touching Redis
        assert counting.round_trips == 1
        assert streamer.lines_dropped == 40
        # WHEN the stage's final flush has two batches to write (9 lines plus two partial ones)
        await streamer.on_stdout("".join(f"c{i}\n" for i in range(9)) + "tail")
        await streamer.on_stderr("tail")
        await streamer.close()
    finally:
        await client.aclose()
    # THEN the flush tried Redis once, despite the outage, and dropped the rest without waiting again
    assert counting.round_trips == 2
    assert streamer.lines_dropped == 40 + 11
    assert streamer.lines_written == 0

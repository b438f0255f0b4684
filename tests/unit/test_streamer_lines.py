"""LogStreamer's line logic (fakeredis: these tests are about splitting, masking and cutting)."""

import pytest
from redis.asyncio import Redis

from buildlogs.stream.streamer import LogStreamer
from tests.support.streams import entries, lines


def make(redis: Redis, build_id: str, **options: object) -> LogStreamer:
    return LogStreamer(redis, build_id, "install", flush_interval_ms=10_000, **options)  # type: ignore[arg-type]


async def test_lines_are_split_across_chunk_boundaries(fake_redis: Redis, build_id: str) -> None:
    # GIVEN output arriving in chunks that do not align with lines (as E2B delivers it)
    streamer = make(fake_redis, build_id)
    # WHEN the chunks arrive and the streamer is flushed
    for chunk in ("abc", "def\nghi\n", "jk", "l\n\nmno"):
        await streamer.on_stdout(chunk)
    await streamer.flush()
    # THEN each line is one entry, the empty line is kept, the partial tail is written by flush
    assert await lines(fake_redis, build_id) == [
        ("stdout", "abcdef"),
        ("stdout", "ghi"),
        ("stdout", "jkl"),
        ("stdout", ""),
        ("stdout", "mno"),
    ]


async def test_partial_line_waits_for_its_newline_until_flush(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a line without its newline
    streamer = make(fake_redis, build_id, flush_lines=1)
    await streamer.on_stdout("done\nstill typ")
    # THEN only the complete line is written
    assert await lines(fake_redis, build_id) == [("stdout", "done")]
    # WHEN the stage ends (flush in finally)
    await streamer.flush()
    # THEN the partial line is written too
    assert await lines(fake_redis, build_id) == [("stdout", "done"), ("stdout", "still typ")]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["a\r\nb\r\n"], ["a", "b"]),
        (["abc\r", "\ndef\n"], ["abc", "def"]),  # \r\n split across two chunks is one newline
        (["10%\r20%\r100%\n"], ["100%"]),  # progress bar: what the terminal shows last
        (["10%\r", "20%\r", "100%", "\n"], ["100%"]),
        (["abc\r\n"], ["abc"]),
        (["abc\r", "\r\n"], ["abc"]),  # an empty last segment does not erase the line
        (["old\rnew text\n"], ["new text"]),
        (["\rfresh\n"], ["fresh"]),
    ],
)
async def test_carriage_returns_keep_what_a_terminal_shows(
    fake_redis: Redis, build_id: str, chunks: list[str], expected: list[str]
) -> None:
    streamer = make(fake_redis, build_id)
    for chunk in chunks:
        await streamer.on_stdout(chunk)
    await streamer.flush()
    assert [text for _, text in await lines(fake_redis, build_id)] == expected


async def test_stdout_and_stderr_are_split_independently(fake_redis: Redis, build_id: str) -> None:
    # GIVEN interleaved partial chunks on both sources
    streamer = make(fake_redis, build_id)
    await streamer.on_stdout("out-")
    await streamer.on_stderr("err-")
    await streamer.on_stdout("line\n")
    await streamer.on_stderr("line\n")
    await streamer.flush()
    # THEN each source's line is whole and tagged with its source and phase
    found = await entries(fake_redis, build_id)
    assert [(e.source, e.phase, e.text) for e in found] == [
        ("stdout", "install", "out-line"),
        ("stderr", "install", "err-line"),
    ]


async def test_utf8_split_across_reads_is_not_mangled(fake_redis: Redis, build_id: str) -> None:
    # GIVEN bytes from a local process with a multi-byte character split across two reads
    streamer = make(fake_redis, build_id)
    data = "héllo ✓ wörld\n".encode()
    cut = data.index("✓".encode()) + 1
    # WHEN they arrive in two reads
    await streamer.on_stdout(data[:cut])
    await streamer.on_stdout(data[cut:])
    await streamer.flush()
    # THEN the character is intact
    assert await lines(fake_redis, build_id) == [("stdout", "héllo ✓ wörld")]


async def test_invalid_utf8_becomes_replacement_characters(fake_redis: Redis, build_id: str) -> None:
    streamer = make(fake_redis, build_id)
    await streamer.on_stderr(b"bad \xff\xfe byte\n")
    await streamer.on_stderr(b"truncated \xe2\x9c")  # an incomplete sequence at the very end
    await streamer.flush()
    assert await lines(fake_redis, build_id) == [("stderr", "bad \ufffd\ufffd byte"), ("stderr", "truncated \ufffd")]


async def test_secrets_are_masked_even_when_split_across_chunks(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a secret printed across two chunks, and one inside a system event
    streamer = make(fake_redis, build_id, secrets=["s3cr3t-T0KEN", ""])
    await streamer.on_stdout("token=s3cr3t-")
    await streamer.on_stdout("T0KEN ok\n")
    await streamer.write_event("using s3cr3t-T0KEN", event="note")
    await streamer.flush()
    # THEN the value never reaches the stream
    texts = [e.text for e in await entries(fake_redis, build_id)]
    assert texts == ["token=*** ok", "using ***"]


async def test_each_line_of_a_multiline_secret_is_masked(fake_redis: Redis, build_id: str) -> None:
    streamer = make(fake_redis, build_id, secrets=["-----BEGIN KEY-----\nAAAAsecretbody\n-----END KEY-----"])
    await streamer.on_stdout("key:\n-----BEGIN KEY-----\nAAAAsecretbody\n")
    await streamer.flush()
    assert [t for _, t in await lines(fake_redis, build_id)] == ["key:", "***", "***"]


async def test_long_lines_are_cut_with_the_count_of_dropped_bytes(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a 64-byte line limit
    streamer = make(fake_redis, build_id, max_line_bytes=64)
    # WHEN a 100-byte line and a line of multi-byte characters arrive
    await streamer.on_stdout("x" * 100 + "\n")
    await streamer.on_stdout("é" * 40 + "\n")  # 80 bytes; 64 is a character boundary
    await streamer.on_stdout("a" + "€" * 30 + "\n")  # 91 bytes; byte 64 falls inside a character
    await streamer.flush()
    first, second, third = [t for _, t in await lines(fake_redis, build_id)]
    # THEN each keeps at most 64 bytes, never half a character, and says how much was dropped
    assert first == "x" * 64 + "…[+36 bytes]"
    assert second == "é" * 32 + "…[+16 bytes]"
    assert third == "a" + "€" * 21 + "…[+27 bytes]"


async def test_secrets_are_masked_before_the_line_is_cut(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a secret straddling the cut position
    streamer = make(fake_redis, build_id, max_line_bytes=64, secrets=["TOPSECRETVALUE"])
    line = "y" * 58 + "TOPSECRETVALUE" + "z" * 10
    await streamer.on_stdout(line + "\n")
    await streamer.flush()
    [(_, text)] = await lines(fake_redis, build_id)
    # THEN no prefix of the secret leaks and the suffix counts only the masked line's extra bytes
    assert "TOPSEC" not in text
    masked = "y" * 58 + "***" + "z" * 10  # 71 bytes
    assert text == masked[:64] + f"…[+{len(masked) - 64} bytes]"


async def test_an_endless_line_keeps_memory_bounded_and_is_cut(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a process printing 2 MB without a newline, in 4 KiB chunks
    streamer = make(fake_redis, build_id, max_line_bytes=1024)
    for _ in range(512):
        await streamer.on_stdout("z" * 4096)
        # THEN the pending line never grows past the limit plus a small margin
        assert streamer.pending_line_chars <= 1024 + 4096
    await streamer.on_stdout("\n")
    await streamer.flush()
    [(_, text)] = await lines(fake_redis, build_id)
    assert text == "z" * 1024 + f"…[+{512 * 4096 - 1024} bytes]"


async def test_stage_writes_end_of_previous_and_start_banner(fake_redis: Redis, build_id: str) -> None:
    # GIVEN a streamer in its first stage with a pending partial line
    streamer = make(fake_redis, build_id)
    await streamer.stage("install")
    await streamer.on_stdout("added 3 packages")
    # WHEN the next stage begins
    await streamer.stage("build")
    await streamer.on_stdout("compiled\n")
    await streamer.end_stage(exit_code=0)
    # THEN the partial line lands in install, then stage_end(install), stage_start(build)
    found = [(e.phase, e.source, e.event, e.text) for e in await entries(fake_redis, build_id)]
    assert found == [
        ("install", "system", "stage_start", "--- Installing dependencies ---"),
        ("install", "stdout", None, "added 3 packages"),
        ("install", "system", "stage_end", "install finished"),
        ("build", "system", "stage_start", "--- Building project ---"),
        ("build", "stdout", None, "compiled"),
        ("build", "system", "stage_end", "build finished"),
    ]
    ends = [e for e in await entries(fake_redis, build_id) if e.event == "stage_end"]
    assert all(isinstance(e.duration_ms, int) and e.duration_ms >= 0 for e in ends)  # type: ignore[attr-defined]
    assert ends[-1].exit_code == 0  # type: ignore[attr-defined]
    assert streamer.phase == "build"


async def test_write_event_keeps_order_and_extra_fields(fake_redis: Redis, build_id: str) -> None:
    streamer = make(fake_redis, build_id)
    await streamer.on_stdout("npm ERR! missing script\n")
    await streamer.write_event("BUILD FAILED: install exited with 1", event="build_failed", exit_code=1, note=None)
    found = await entries(fake_redis, build_id)
    assert [(e.source, e.text) for e in found] == [
        ("stdout", "npm ERR! missing script"),
        ("system", "BUILD FAILED: install exited with 1"),
    ]
    assert found[1].event == "build_failed"
    assert found[1].to_record()["exit_code"] == 1
    assert "note" not in found[1].to_record()


async def test_an_invalid_build_id_is_rejected_before_any_key(fake_redis: Redis) -> None:
    for hostile in ("../x", "a/b", "x" * 300, "", "a b", "{tag}"):
        with pytest.raises(ValueError, match="invalid build id"):
            LogStreamer(fake_redis, hostile, "install")
    assert await fake_redis.keys("*") == []

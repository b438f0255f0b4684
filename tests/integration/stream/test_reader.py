"""LogReader against a real Redis: cursors, long-poll, done."""

import asyncio
import random

import pytest
from redis.asyncio import Redis

from buildlogs.stream.reader import LogReader
from buildlogs.stream.streamer import LogStreamer
from tests.support.streams import wait_for_blocked_reader


async def test_readers_following_next_see_every_entry_once_while_writing(redis: Redis, build_id: str) -> None:
    # GIVEN a writer streaming 3,000 lines in ragged chunks with stage changes and a final end entry
    rng = random.Random(7)
    expected = [f"line {i}" for i in range(3000)]

    async def write() -> None:
        streamer = LogStreamer(redis, build_id, "install", flush_lines=37, flush_interval_ms=1)
        await streamer.stage("install")
        payload = "".join(f"{text}\n" for text in expected)
        position = 0
        while position < len(payload):
            size = rng.randint(1, 300)
            await streamer.on_stdout(payload[position : position + size])
            position += size
            if rng.random() < 0.05:
                await asyncio.sleep(0)  # let the readers interleave
        await streamer.end_stage(exit_code=0)
        await streamer.write_event("BUILD SUCCEEDED", event="end", status="SUCCEEDED")
        await streamer.close()

    async def follow(limit: int) -> list[str]:
        reader, cursor, seen_ids, texts = LogReader(redis), "0-0", [], []
        while True:
            page = await reader.read(build_id, after=cursor, limit=limit, wait_ms=2000)
            seen_ids += [e.id for e in page.entries]
            texts += [e.text for e in page.entries if e.source == "stdout"]
            cursor = page.next
            if page.done:
                assert page.entries[-1].event == "end"
                assert seen_ids == sorted(seen_ids, key=lambda i: tuple(map(int, i.split("-"))))
                assert len(seen_ids) == len(set(seen_ids))
                return texts

    # WHEN two readers with different page sizes follow it live
    _, small_pages, large_pages = await asyncio.gather(write(), follow(7), follow(1000))
    # THEN each saw every line exactly once, in order
    assert small_pages == expected
    assert large_pages == expected


async def test_long_poll_returns_as_soon_as_an_entry_arrives(redis: Redis, build_id: str) -> None:
    # GIVEN a reader long-polling an empty stream for up to 10 s
    reader = LogReader(redis)
    read = asyncio.create_task(reader.read(build_id, wait_ms=10_000))
    await wait_for_blocked_reader(redis)
    # WHEN a line is written
    streamer = LogStreamer(redis, build_id, "build", flush_interval_ms=0)
    await streamer.on_stdout("hello\n")
    # THEN the read returns with it long before its wait is over
    page = await asyncio.wait_for(read, timeout=5)
    assert [e.text for e in page.entries] == ["hello"]
    assert page.next == page.entries[0].id
    assert not page.done
    await streamer.close()


@pytest.mark.parametrize("wait_ms", [0, 10])
async def test_the_largest_possible_cursor_is_an_empty_page(redis: Redis, build_id: str, wait_ms: int) -> None:
    last = f"{2**64 - 1}-{2**64 - 1}"
    page = await LogReader(redis).read(build_id, after=last, wait_ms=wait_ms)
    assert (page.entries, page.next, page.done) == ([], last, False)


async def test_an_empty_poll_returns_the_same_cursor(redis: Redis, build_id: str) -> None:
    page = await LogReader(redis).read(build_id, after="5-3", wait_ms=50)
    assert (page.entries, page.next, page.done) == ([], "5-3", False)


async def test_done_once_the_end_entry_was_returned(redis: Redis, build_id: str) -> None:
    # GIVEN a finished log
    streamer = LogStreamer(redis, build_id, "build")
    await streamer.on_stdout("a\nb\n")
    await streamer.flush()
    reader = LogReader(redis)
    before_end = await reader.read(build_id)
    await streamer.write_event("BUILD FAILED", event="end", status="FAILED")
    # WHEN readers page through it
    first = await reader.read(build_id, limit=2)
    rest = await reader.read(build_id, after=first.next)
    after_end = await reader.read(build_id, after=rest.next, wait_ms=10)
    # THEN done is false until the end entry is returned, and stays true afterwards
    assert not before_end.done
    assert not first.done
    assert rest.done
    assert rest.entries[-1].status == "FAILED"  # type: ignore[attr-defined]
    assert after_end.done
    assert after_end.entries == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"after": "abc"}, "invalid cursor"),
        ({"after": "1-2-3"}, "invalid cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"wait_ms": -1}, "wait_ms"),
        ({"wait_ms": 20_001}, "wait_ms"),
    ],
)
async def test_bad_arguments_are_clear_errors(redis: Redis, build_id: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await LogReader(redis).read(build_id, **kwargs)


async def test_a_hostile_build_id_never_reaches_redis(redis: Redis) -> None:
    with pytest.raises(ValueError, match="invalid build id"):
        await LogReader(redis).read("../../etc")

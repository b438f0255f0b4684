"""GET /builds/{id}/logs: live pages, long-poll, filters, the archive after expiry, errors."""

import asyncio
import random
import time

import pytest
from redis.asyncio import Redis

from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import entry_id_key, logs_key, meta_key
from buildlogs.stream.streamer import LogStreamer
from tests.support.api import ARCHIVE, Api, archive_and_expire, spec, write_log
from tests.support.streams import wait_for_blocked_reader

pytestmark = [pytest.mark.redis]


def _submit(api: Api, build_id: str) -> None:
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202


SCRIPT = [
    ("stage", "install", {}),
    ("stdout", "added 3 packages", {}),
    ("stderr", "npm WARN deprecated", {}),
    ("end_stage", "", {"exit_code": 0}),
    ("stage", "build", {}),
    ("stdout", "built in 1s", {}),
    ("end_stage", "", {"exit_code": 0}),
    ("event", "end of log: SUCCEEDED", {"event": "end", "status": "SUCCEEDED"}),
]


def test_a_page_returns_entries_with_their_ids_and_the_next_cursor(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a build with a finished log
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    # WHEN it is read three entries at a time
    first = api.call("GET", f"/builds/{build_id}/logs?limit=3").body
    second = api.call("GET", f"/builds/{build_id}/logs?limit=3&after={first['next']}").body
    rest = api.call("GET", f"/builds/{build_id}/logs?limit=1000&after={second['next']}").body
    # THEN the pages are consecutive, the last one is done and ends with the end entry
    entries = first["entries"] + second["entries"] + rest["entries"]
    assert [e["text"] for e in entries if e["source"] != "system"] == [
        "added 3 packages",
        "npm WARN deprecated",
        "built in 1s",
    ]
    assert first["next"] == first["entries"][-1]["id"]
    assert (first["done"], second["done"], rest["done"]) == (False, False, True)
    assert entries[-1]["event"] == "end"
    assert entries[-1]["status"] == "SUCCEEDED"
    assert entries[0]["event"] == "stage_start"
    assert {"id", "ts", "source", "text", "phase"} <= set(entries[0])
    # AND after the end, an empty page is still done with the same cursor
    after_end = api.call("GET", f"/builds/{build_id}/logs?after={rest['next']}").body
    assert after_end == {"entries": [], "next": rest["next"], "done": True, "prev": None}


def test_filters_keep_matching_entries_and_next_moves_past_the_others(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a log with two stages
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    # WHEN only stderr, only the build phase and only stdout of build are asked for
    stderr = api.call("GET", f"/builds/{build_id}/logs?source=stderr").body
    build = api.call("GET", f"/builds/{build_id}/logs?phase=build").body
    build_stdout = api.call("GET", f"/builds/{build_id}/logs?phase=build&source=stdout").body
    # THEN each page holds exactly the matching entries
    assert [e["text"] for e in stderr["entries"]] == ["npm WARN deprecated"]
    assert {e["phase"] for e in build["entries"]} == {"build"}
    assert [e["text"] for e in build_stdout["entries"]] == ["built in 1s"]
    # AND a filter that matches nothing still moves the cursor to the end, so a reader never stalls
    nothing = api.call("GET", f"/builds/{build_id}/logs?phase=healthcheck&limit=2").body
    everything = api.call("GET", f"/builds/{build_id}/logs").body
    assert nothing["entries"] == []
    assert nothing["next"] == everything["entries"][-1]["id"]
    assert nothing["done"] is True


def test_a_known_build_without_log_lines_yet_gives_an_empty_page(api: Api, build_id: str) -> None:
    _submit(api, build_id)
    response = api.call("GET", f"/builds/{build_id}/logs")
    assert response.status == 200
    assert response.body == {"entries": [], "next": "0-0", "done": False, "prev": None}


def test_logs_of_an_unknown_build_are_a_404(api: Api, build_id: str) -> None:
    response = api.call("GET", f"/builds/{build_id}/logs?wait=1")
    assert response.status == 404
    assert response.body == {"error": "not_found", "message": f"no build {build_id}"}


@pytest.mark.parametrize(
    "cursor",
    ["abc", "1-", "-1", "1-2-3", "1.5-0", "%20", "0-0;DEL", "99999999999999999999-0", "0-18446744073709551616"],
)
@pytest.mark.parametrize("wait", [0, 1])
def test_a_malformed_cursor_is_a_400(api: Api, build_id: str, cursor: str, wait: int) -> None:
    _submit(api, build_id)
    response = api.call("GET", f"/builds/{build_id}/logs?after={cursor}&wait={wait}")
    assert response.status == 400
    assert response.body["error"] in {"invalid_cursor", "invalid_request"}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "wait=-1", "wait=21", "wait=x", "source=db", "phase=Has Space"]
)
def test_out_of_range_parameters_are_400_never_clamped(api: Api, build_id: str, query: str) -> None:
    _submit(api, build_id)
    response = api.call("GET", f"/builds/{build_id}/logs?{query}")
    assert response.status == 400
    assert response.body["error"] == "invalid_request"
    assert response.body["field"] == query.split("=")[0]


def test_after_expiry_the_archive_serves_the_same_entries_with_the_same_ids(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a build read live to the middle of its log
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT[:-1])
    live = api.call("GET", f"/builds/{build_id}/logs?limit=1000").body
    middle = live["entries"][2]["id"]
    # WHEN it is archived and its stream expires
    api.call("POST", f"/builds/{build_id}/cancel")
    archive_and_expire(redis_url, api.s3, build_id, "ABORTED")
    # THEN the archive continues exactly after the live cursor, with the same ids
    archived = api.call("GET", f"/builds/{build_id}/logs?after={middle}&limit=1000").body
    assert [e["id"] for e in archived["entries"][: len(live["entries"]) - 3]] == [e["id"] for e in live["entries"][3:]]
    assert [e.get("event") for e in archived["entries"][-2:]] == ["build_failed", "end"]
    assert archived["done"] is True
    # AND filters and small pages work there too, never stalling
    stderr = api.call("GET", f"/builds/{build_id}/logs?source=stderr&limit=1").body
    assert [e["text"] for e in stderr["entries"]] == ["npm WARN deprecated"]
    rest = api.call("GET", f"/builds/{build_id}/logs?source=stderr&after={stderr['next']}").body
    assert rest["entries"] == []
    assert rest["done"] is True
    paged, cursor = [], "0-0"
    while True:
        page = api.call("GET", f"/builds/{build_id}/logs?limit=2&after={cursor}").body
        paged += page["entries"]
        cursor = page["next"]
        if page["done"]:
            break
    assert len(paged) == len(live["entries"]) + 2
    assert len({e["id"] for e in paged}) == len(paged)


async def test_a_reader_following_next_sees_every_entry_once_live_then_from_the_archive(
    api: Api, redis: Redis, redis_url: str, build_id: str
) -> None:
    # GIVEN a build whose log is being written in ragged chunks while a reader follows it
    _submit(api, build_id)
    rng = random.Random(11)
    expected = [f"line {i}" for i in range(1500)]
    seen: list[dict] = []
    cursor = "0-0"

    async def write() -> None:
        streamer = LogStreamer(redis, build_id, "build", flush_lines=23, flush_interval_ms=1)
        await streamer.stage("build")
        payload = "".join(f"{text}\n" for text in expected)
        position = 0
        while position < len(payload):
            size = rng.randint(1, 400)
            await streamer.on_stdout(payload[position : position + size])
            position += size
            await asyncio.sleep(0)
        await streamer.close()

    def follow(until: int | None) -> None:
        nonlocal cursor
        while True:
            response = api.call("GET", f"/builds/{build_id}/logs?after={cursor}&limit=37&wait=1")
            assert response.status == 200, response.body
            seen.extend(response.body["entries"])
            cursor = response.body["next"]
            if response.body["done"] or (until is not None and len(seen) >= until):
                return

    # WHEN the reader follows live until half the lines are in, the run ends and is archived,
    # the stream expires, and the reader carries on from its cursor
    await asyncio.gather(write(), asyncio.to_thread(follow, 750))
    assert 750 <= len(seen) < 1500
    api.call("POST", f"/builds/{build_id}/cancel")
    result = await archive_logs(redis, api.s3, ARCHIVE, build_id, "ABORTED", ttl_seconds=600)
    assert result is not None
    await redis.delete(logs_key(build_id), meta_key(build_id))
    await asyncio.to_thread(follow, None)
    # THEN it saw every entry exactly once, in order, ending with the end entry
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids, key=entry_id_key)
    assert [e["text"] for e in seen if e["source"] == "stdout"] == expected
    assert seen[-1]["event"] == "end"
    assert len(seen) == result.lines


async def test_a_long_poll_returns_as_soon_as_an_entry_arrives(api: Api, redis: Redis, build_id: str) -> None:
    # GIVEN a reader long-polling a running build for up to 20 s
    _submit(api, build_id)
    started = time.monotonic()
    read = asyncio.create_task(asyncio.to_thread(api.call, "GET", f"/builds/{build_id}/logs?wait=20"))
    await wait_for_blocked_reader(redis)
    # WHEN a line is written
    streamer = LogStreamer(redis, build_id, "build", flush_interval_ms=0)
    await streamer.on_stdout("hello\n")
    await streamer.close()
    # THEN the request returns with it long before its wait is over
    response = await asyncio.wait_for(read, timeout=10)
    assert time.monotonic() - started < 10
    assert response.status == 200
    assert [e["text"] for e in response.body["entries"]] == ["hello"]
    assert response.body["next"] == response.body["entries"][0]["id"]


def test_a_long_poll_without_entries_returns_after_its_wait(api: Api, build_id: str) -> None:
    # GIVEN a running build with no new entries
    _submit(api, build_id)
    # WHEN a reader waits one second
    started = time.monotonic()
    response = api.call("GET", f"/builds/{build_id}/logs?wait=1&after=5-0")
    elapsed = time.monotonic() - started
    # THEN it gets an empty page with its own cursor after about that second
    assert response.status == 200
    assert response.body == {"entries": [], "next": "5-0", "done": False, "prev": None}
    assert 0.9 <= elapsed < 5


async def test_a_filtered_long_poll_waits_for_a_matching_entry(api: Api, redis: Redis, build_id: str) -> None:
    # GIVEN a reader long-polling for stderr only
    _submit(api, build_id)
    read = asyncio.create_task(asyncio.to_thread(api.call, "GET", f"/builds/{build_id}/logs?wait=20&source=stderr"))
    await wait_for_blocked_reader(redis)
    # WHEN stdout arrives first, then stderr
    streamer = LogStreamer(redis, build_id, "build", flush_interval_ms=0)
    await streamer.on_stdout("not this\n")
    await wait_for_blocked_reader(redis)
    await streamer.on_stderr("this\n")
    await streamer.close()
    # THEN the page holds the stderr line, and next is past the stdout line
    response = await asyncio.wait_for(read, timeout=10)
    assert [e["text"] for e in response.body["entries"]] == ["this"]
    assert response.body["next"] == response.body["entries"][0]["id"]

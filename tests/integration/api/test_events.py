"""GET /builds/{id}/events with a real SSE client (requests_sse.EventSource) over HTTP on 127.0.0.1.

Each response carries one page and ends (API Gateway buffers responses): the client reconnects
with Last-Event-ID. These tests prove that many such reconnects, while a writer appends, deliver
every entry once and in order, and that the stream stops at the end of the log.
"""

import json
from typing import Any

import pytest
import redis as sync_redis
import requests
from requests_sse import EventSource, InvalidStatusCodeError, MessageEvent

from buildlogs.api.events import SSE_RETRY_MS
from buildlogs.keys import logs_key
from buildlogs.stream.entries import entry_record
from tests.support.api import Api, archive_and_expire, serve_api, spec, write_log
from tests.support.api_logs import Progress, numbered_lines, paced_writer, raw_call, redis_down

pytestmark = [pytest.mark.redis]


def _submit(api: Api, build_id: str) -> None:
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202


def _stream(redis_url: str, build_id: str) -> list[dict[str, Any]]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [entry_record(entry_id, fields) for entry_id, fields in client.xrange(logs_key(build_id))]
    finally:
        client.close()


def _logs(api: Api, build_id: str) -> list[dict[str, Any]]:
    response = api.call("GET", f"/builds/{build_id}/logs?limit=1000")
    assert response.status == 200, response.body
    assert response.body["done"] is True
    entries: list[dict[str, Any]] = response.body["entries"]
    return entries


def _follow(url: str, progress: Progress | None = None) -> tuple[list[MessageEvent], int, int]:
    """Read events until the server ends the stream: the events, the connections made, the final status."""
    received: list[MessageEvent] = []
    opens: list[int] = []
    with (
        EventSource(url, timeout=30, on_open=lambda: opens.append(1)) as source,
        pytest.raises(InvalidStatusCodeError) as stopped,
    ):
        _drain(source, received, progress)
    return received, len(opens), stopped.value.status_code


def _drain(source: EventSource, received: list[MessageEvent], progress: Progress | None) -> None:
    """Every event until the source raises (it reconnects by itself in between)."""
    for message in source:
        received.append(message)
        if progress is not None:
            progress.add()


def test_reconnects_while_a_writer_appends_deliver_every_entry_once_and_stop_at_end(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a build whose log a writer appends to in batches, each once the reader caught up
    _submit(api, build_id)
    progress = Progress()
    with serve_api() as base, paced_writer(redis_url, build_id, 12, 15, progress) as errors:
        # WHEN an EventSource follows it, at most 10 events per response
        received, connections, final = _follow(f"{base}/builds/{build_id}/events?limit=10&wait=10", progress)
    assert errors == []

    # THEN every entry arrived exactly once, in order, as the stream holds it and /logs returns it,
    # over many reconnects
    stream = _stream(redis_url, build_id)
    assert len(stream) > 180
    assert [message.last_event_id for message in received] == [entry["id"] for entry in stream]
    assert [json.loads(message.data) for message in received] == _logs(api, build_id)
    assert connections > 20
    # AND the end entry came as `event: end` with its status, and the next connection got 204: it stopped
    assert [message.type for message in received[:-1]] == ["message"] * (len(received) - 1)
    assert received[-1].type == "end"
    assert json.loads(received[-1].data)["status"] == "SUCCEEDED"
    assert final == 204


def test_a_body_is_heartbeat_retry_then_one_event_per_entry(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a finished log of 2 lines
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(2))
    # WHEN its events are read in one response
    response = raw_call(f"/builds/{build_id}/events?wait=0")
    # THEN the body is framed as EventSource expects
    assert response.status == 200
    assert response.header("Content-Type") == "text/event-stream"
    assert response.header("Cache-Control") == "no-cache"
    blocks = response.text.split("\n\n")
    assert blocks[:2] == [": heartbeat", f"retry: {SSE_RETRY_MS}"]
    events = [block.split("\n") for block in blocks[2:] if block]
    assert [len(lines) for lines in events] == [2, 2, 2, 2, 3]
    assert all(lines[0].startswith("id: ") and lines[-1].startswith("data: {") for lines in events)
    assert events[-1][1] == "event: end"
    assert json.loads(events[1][-1].removeprefix("data: "))["text"] == "line 0"


def test_tail_starts_with_the_last_entries_and_last_event_id_resumes(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a finished log
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(20))
    everything = api.call("GET", f"/builds/{build_id}/logs?limit=1000").body["entries"]
    with serve_api() as base:
        # WHEN an EventSource starts at its tail of 3
        received, _connections, final = _follow(f"{base}/builds/{build_id}/events?tail=3&wait=1")
        # THEN it gets just those 3 (the last one the end) and stops
        assert [json.loads(message.data) for message in received] == everything[-3:]
        assert final == 204
        # AND Last-Event-ID wins over after: it resumes strictly after it
        resumed = requests.get(
            f"{base}/builds/{build_id}/events?after=0-0&wait=0",
            headers={"Last-Event-ID": everything[-4]["id"]},
            timeout=10,
        )
    ids = [line.removeprefix("id: ") for line in resumed.text.splitlines() if line.startswith("id: ")]
    assert ids == [entry["id"] for entry in everything[-3:]]


def test_after_the_end_is_204_with_no_body(api: Api, redis_url: str, build_id: str) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(1))
    end = api.call("GET", f"/builds/{build_id}/logs?tail=1").body["entries"][-1]
    assert end["event"] == "end"
    with serve_api() as base:
        response = requests.get(
            f"{base}/builds/{build_id}/events?wait=20", headers={"Last-Event-ID": end["id"]}, timeout=10
        )
        with (
            pytest.raises(InvalidStatusCodeError) as stopped,
            EventSource(f"{base}/builds/{build_id}/events", latest_event_id=end["id"]),
        ):
            pass
    assert (response.status_code, response.content) == (204, b"")
    assert stopped.value.status_code == 204


def test_filters_send_only_kept_entries_and_move_the_cursor_past_the_rest(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a finished log with one stderr line among many stdout lines
    _submit(api, build_id)
    write_log(
        redis_url,
        build_id,
        [("stdout", f"out {n}", {}) for n in range(30)]
        + [("stderr", "the error", {})]
        + [("stdout", "after", {}), ("event", "end of log: FAILED", {"event": "end", "status": "FAILED"})],
    )
    with serve_api() as base:
        # WHEN an EventSource follows only stderr, 2 per page (so a response scans 20 entries at most)
        received, connections, final = _follow(f"{base}/builds/{build_id}/events?source=stderr&limit=2&wait=1")
    # THEN it got only the stderr line, and the log's end still stopped it (bare ids moved its cursor)
    assert [json.loads(message.data)["text"] for message in received] == ["the error"]
    assert final == 204
    assert connections >= 2


def test_the_same_events_once_archived(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN the events of a finished log, read live
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(12))
    with serve_api() as base:
        live, _, _ = _follow(f"{base}/builds/{build_id}/events?limit=5&wait=1")
        # WHEN the log is archived and its stream expires
        archive_and_expire(redis_url, api.s3, build_id)
        archived, _, final = _follow(f"{base}/builds/{build_id}/events?limit=5&wait=1")
    # THEN the archive gives the same events
    assert [(m.type, m.data, m.last_event_id) for m in archived] == [(m.type, m.data, m.last_event_id) for m in live]
    assert len(live) == 15  # stage start, 12 lines, stage end, end
    assert final == 204


@pytest.mark.parametrize(
    ("query", "headers", "status", "error"),
    [
        ("", {"Last-Event-ID": "not-an-id"}, 400, "invalid_cursor"),
        ("after=yesterday", {}, 400, "invalid_cursor"),
        ("after=1-0&tail=3", {}, 400, "invalid_request"),
        ("wait=21", {}, 400, "invalid_request"),
        ("limit=0", {}, 400, "invalid_request"),
    ],
)
def test_bad_requests_are_json_400s(
    api: Api, build_id: str, query: str, headers: dict[str, str], status: int, error: str
) -> None:
    _submit(api, build_id)
    response = raw_call(f"/builds/{build_id}/events?{query}", headers=headers)
    assert response.status == status
    assert response.header("Content-Type") == "application/json"
    assert response.json()["error"] == error


def test_an_unknown_build_is_a_json_404(api: Api, build_id: str) -> None:
    response = raw_call(f"/builds/{build_id}/events?wait=0")
    assert response.status == 404
    assert response.json() == {"error": "not_found", "message": f"no build {build_id}"}


def test_redis_unavailable_is_a_503_with_retry_after(api: Api, build_id: str) -> None:
    _submit(api, build_id)
    with redis_down():
        response = raw_call(f"/builds/{build_id}/events?wait=0")
    assert response.status == 503
    assert response.json()["error"] == "unavailable"
    assert response.header("Retry-After")

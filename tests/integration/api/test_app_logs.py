"""GET /builds/{id}/logs backwards: tail, before, prev — live and archived alike; parameter errors; 503."""

from typing import Any

import pytest

from tests.support.api import Api, archive_and_expire, spec, write_log
from tests.support.api_logs import numbered_lines, raw_call, redis_down

pytestmark = [pytest.mark.redis]


def _submit(api: Api, build_id: str) -> None:
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202


def _walk_back(api: Api, build_id: str, first: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Follow ``prev`` with ``before`` until the start: every entry, oldest first."""
    pages = [first]
    while pages[-1]["prev"] is not None:
        pages.append(api.call("GET", f"/builds/{build_id}/logs?before={pages[-1]['prev']}&limit={limit}").body)
    return [entry for page in reversed(pages) for entry in page["entries"]]


def _forward(api: Api, build_id: str) -> list[dict[str, Any]]:
    body = api.call("GET", f"/builds/{build_id}/logs?limit=1000").body
    assert body["done"] is True
    entries: list[dict[str, Any]] = body["entries"]
    return entries


def test_tail_then_prev_walks_back_through_the_whole_log(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a finished log of 45 lines (+ stage lines and end)
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(45))
    everything = _forward(api, build_id)

    # WHEN its tail of 10 is read
    tail = api.call("GET", f"/builds/{build_id}/logs?tail=10")

    # THEN it holds the last 10 entries oldest first, prev = the oldest of them, next = the end entry
    assert tail.status == 200
    assert tail.body["entries"] == everything[-10:]
    assert tail.body["prev"] == everything[-10]["id"]
    assert (tail.body["next"], tail.body["done"]) == (everything[-1]["id"], True)
    # AND following prev with before=… gives every earlier entry once, and prev is null at the start
    assert _walk_back(api, build_id, tail.body, 10) == everything
    # AND before=X with limit is the page just before X
    middle = api.call("GET", f"/builds/{build_id}/logs?before={everything[20]['id']}&limit=5").body
    assert middle["entries"] == everything[15:20]
    assert middle["prev"] == everything[15]["id"]
    assert middle["done"] is False


def test_backward_pages_are_the_same_once_archived(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a log read backwards while live
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(30))
    live_tail = api.call("GET", f"/builds/{build_id}/logs?tail=7").body
    live_before = api.call("GET", f"/builds/{build_id}/logs?before={live_tail['prev']}&limit=9").body
    live_filtered = api.call("GET", f"/builds/{build_id}/logs?tail=4&source=system").body

    # WHEN it is archived and its stream expires
    archive_and_expire(redis_url, api.s3, build_id)

    # THEN the same requests give the same answers
    assert api.call("GET", f"/builds/{build_id}/logs?tail=7").body == live_tail
    assert api.call("GET", f"/builds/{build_id}/logs?before={live_tail['prev']}&limit=9").body == live_before
    assert api.call("GET", f"/builds/{build_id}/logs?tail=4&source=system").body == live_filtered
    assert {entry["source"] for entry in live_filtered["entries"]} == {"system"}


def test_a_forward_page_has_no_prev(api: Api, redis_url: str, build_id: str) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(3))
    body = api.call("GET", f"/builds/{build_id}/logs?limit=2").body
    assert body["prev"] is None
    assert len(body["entries"]) == 2


@pytest.mark.parametrize(
    ("query", "error", "field"),
    [
        ("after=1-0&tail=5", "invalid_request", "after"),
        ("after=1-0&before=2-0", "invalid_request", "after"),
        ("before=2-0&tail=5", "invalid_request", "tail"),
        ("before=yesterday", "invalid_cursor", "before"),
        ("tail=0", "invalid_request", "tail"),
        ("tail=1001", "invalid_request", "tail"),
    ],
)
def test_contradictory_or_invalid_parameters_are_a_400(
    api: Api, redis_url: str, build_id: str, query: str, error: str, field: str
) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, numbered_lines(2))
    response = api.call("GET", f"/builds/{build_id}/logs?{query}")
    assert response.status == 400
    assert (response.body["error"], response.body["field"]) == (error, field)
    assert response.body["message"]


def test_tail_of_an_unknown_build_is_a_404(api: Api, build_id: str) -> None:
    response = api.call("GET", f"/builds/{build_id}/logs?tail=5")
    assert response.status == 404
    assert response.body["error"] == "not_found"


@pytest.mark.parametrize("query", ["tail=5", "before=5-0", "after=0-0", ""])
def test_redis_unavailable_is_a_503_with_retry_after(api: Api, build_id: str, query: str) -> None:
    # GIVEN a build whose Redis refuses connections
    _submit(api, build_id)
    with redis_down():
        # WHEN its log is read THEN a 503 says to retry, with Retry-After
        response = raw_call(f"/builds/{build_id}/logs?{query}")
    assert response.status == 503
    assert response.json()["error"] == "unavailable"
    assert int(response.header("Retry-After") or 0) >= 1

"""Pages of long lines stay under a Lambda response's 6 MB: /logs (forwards, tail, before), /logs/search
and /events stop at PAGE_BUDGET_BYTES of entries, and their cursors go on from there — every entry once.

The log: 400 lines of 16 KiB (LOG_MAX_LINE_BYTES) of plain text, quotes, backslashes and é, ~20 MB
once in a response; with limit=1000 a page without the budget would be all of it.
"""

import json
from typing import Any

import pytest
import redis as sync_redis

from buildlogs.keys import logs_key
from buildlogs.limits import LAMBDA_PAYLOAD_BYTES, PAGE_BUDGET_BYTES
from buildlogs.stream.entries import entry_record
from tests.support.api import Api, archive_and_expire, spec
from tests.support.api_logs import RawResponse, raw_call, write_wide_lines

pytestmark = [pytest.mark.redis]

LINES = 400
# The envelope, headers and a page's cursors around its entries: far less than this.
SLACK_BYTES = 16 * 1024


@pytest.fixture(params=[False, True], ids=["live", "archived"])
def wide_log(request: pytest.FixtureRequest, api: Api, redis_url: str, build_id: str) -> list[dict[str, Any]]:
    """The build's log of 400 wide lines and end (its stream's records), live or archived."""
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202
    write_wide_lines(redis_url, build_id, LINES)
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        records = [entry_record(entry_id, fields) for entry_id, fields in client.xrange(logs_key(build_id))]
    finally:
        client.close()
    if request.param:
        archive_and_expire(redis_url, api.s3, build_id)
    return records


def _get(path: str, headers: dict[str, str] | None = None) -> RawResponse:
    response = raw_call(path, headers)
    assert response.status in (200, 204), response.text[:500]
    # THEN every response stays within the page budget (and so far under Lambda's limit)
    assert response.payload_bytes <= PAGE_BUDGET_BYTES + SLACK_BYTES < LAMBDA_PAYLOAD_BYTES
    return response


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [str(entry["id"]) for entry in entries]


def _assert_paged(pages: list[list[str]], expected: list[str]) -> None:
    """Every entry exactly once, in order, over several pages, none of them empty."""
    assert [entry_id for page in pages for entry_id in page] == expected
    assert len(pages) >= 4
    assert all(pages)


def test_forward_pages_stop_at_the_budget_and_next_goes_on(build_id: str, wide_log: list[dict[str, Any]]) -> None:
    pages: list[list[str]] = []
    after = "0-0"
    while True:
        body = _get(f"/builds/{build_id}/logs?limit=1000&after={after}").json()
        pages.append(_ids(body["entries"]))
        after = body["next"]
        if body["done"]:
            break
        assert body["entries"], "a page that is not done holds entries"
    _assert_paged(pages, _ids(wide_log))
    assert after == wide_log[-1]["id"]


def test_tail_and_before_pages_stop_at_the_budget_and_prev_goes_on(
    build_id: str, wide_log: list[dict[str, Any]]
) -> None:
    first = _get(f"/builds/{build_id}/logs?tail=1000").json()
    assert first["next"] == wide_log[-1]["id"]
    assert first["done"] is True
    pages = [_ids(first["entries"])]
    prev = first["prev"]
    while prev is not None:
        body = _get(f"/builds/{build_id}/logs?before={prev}&limit=1000").json()
        pages.append(_ids(body["entries"]))
        prev = body["prev"]
    _assert_paged(pages[::-1], _ids(wide_log))


def test_search_pages_stop_at_the_budget_and_next_goes_on(build_id: str, wide_log: list[dict[str, Any]]) -> None:
    expected = [record for record in wide_log if " line " in record["text"]]
    assert len(expected) == LINES
    for query in ("q=%20line%20", "q=%5E%5Cd%7B6%7D%20line%20&regex=true"):
        pages: list[list[str]] = []
        totals: set[int] = set()
        after = "0-0"
        while True:
            body = _get(f"/builds/{build_id}/logs/search?{query}&limit=1000&after={after}").json()
            pages.append(_ids(body["matches"]))
            totals.add(body["total"])
            after = body["next"]
            if body["done"]:
                break
        _assert_paged(pages, _ids(expected))
        assert totals == {LINES}


def test_filtered_pages_stop_at_the_budget_too(build_id: str, wide_log: list[dict[str, Any]]) -> None:
    expected = [record for record in wide_log if record["source"] == "stdout"]
    forward: list[list[str]] = []
    after = "0-0"
    while True:
        body = _get(f"/builds/{build_id}/logs?source=stdout&limit=1000&after={after}").json()
        forward.append(_ids(body["entries"]))
        after = body["next"]
        if body["done"]:
            break
    assert [entry_id for page in forward for entry_id in page] == _ids(expected)
    backward: list[list[str]] = []
    query = "tail=1000"
    while True:
        body = _get(f"/builds/{build_id}/logs?source=stdout&{query}").json()
        backward.append(_ids(body["entries"]))
        if body["prev"] is None:
            break
        query = f"before={body['prev']}&limit=1000"
    assert [entry_id for page in backward[::-1] for entry_id in page] == _ids(expected)
    assert len(backward) >= 3


def _events(body: str) -> tuple[list[str], str | None]:
    """The ids of the events of an SSE body (with data), and the last ``id:`` it set."""
    ids: list[str] = []
    last: str | None = None
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "id" in fields:
            last = fields["id"]
            if "data" in fields:
                assert json.loads(fields["data"])["id"] == fields["id"]
                ids.append(fields["id"])
    return ids, last


def test_event_pages_stop_at_the_budget_and_last_event_id_goes_on(
    build_id: str, wide_log: list[dict[str, Any]]
) -> None:
    # the default limit (1000) from the start, then reconnects with Last-Event-ID until the 204
    pages: list[list[str]] = []
    headers: dict[str, str] = {}
    while True:
        response = _get(f"/builds/{build_id}/events?wait=0", headers)
        if response.status == 204:
            break
        ids, last = _events(response.text)
        pages.append(ids)
        assert last is not None
        headers = {"Last-Event-ID": last}
    _assert_paged(pages, _ids(wide_log))
    # AND a tail of 1,000 is cut at the budget too: its last entries, the log's end included
    tail, _last = _events(_get(f"/builds/{build_id}/events?tail=1000").text)
    assert 0 < len(tail) < len(wide_log)
    assert tail == _ids(wide_log)[-len(tail) :]

"""GET /builds/{id}/logs/search: matches after a cursor, the exact total, paging, 400s — live and archived."""

from typing import Any

import pytest

from buildlogs.api import search
from tests.support.api import Api, archive_and_expire, spec, write_log
from tests.support.api_logs import raw_call, redis_down

pytestmark = [pytest.mark.redis]

SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    ("stage", "install", {}),
    *(("stdout", f"fetch package-{n}", {}) for n in range(25)),
    ("stderr", "npm WARN Deprecated package-3", {}),
    ("end_stage", "", {"exit_code": 0}),
    ("stage", "build", {}),
    ("stdout", "\x1b[31mERROR\x1b[0m in Package-7", {}),
    ("event", "end of log: FAILED", {"event": "end", "status": "FAILED"}),
]


def _submit(api: Api, build_id: str) -> None:
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202


def _all_matches(api: Api, build_id: str, query: str) -> tuple[list[str], set[int]]:
    """Follow next until done: every match's text, and the totals reported on the way."""
    texts: list[str] = []
    totals: set[int] = set()
    after = "0-0"
    while True:
        body = api.call("GET", f"/builds/{build_id}/logs/search?{query}&limit=4&after={after}").body
        texts += [entry["text"] for entry in body["matches"]]
        totals.add(body["total"])
        after = body["next"]
        if body["done"]:
            return texts, totals


def test_search_pages_through_every_match_with_the_whole_logs_total(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a log where "package-1" matches package-1 and package-10..19 (case-insensitively)
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    # WHEN it is searched 4 matches at a time
    texts, totals = _all_matches(api, build_id, "q=PACKAGE-1")
    # THEN every match arrives once in order, and every page reports the same exact total
    assert texts == ["fetch package-1", *(f"fetch package-{n}" for n in range(10, 20))]
    assert totals == {11}
    # AND a first page holds limit matches and is not done
    first = api.call("GET", f"/builds/{build_id}/logs/search?q=package-1&limit=2").body
    assert (len(first["matches"]), first["total"], first["done"]) == (2, 11, False)
    assert first["next"] == first["matches"][-1]["id"]
    assert set(first) == {"matches", "total", "next", "done"}


def test_regex_filters_and_the_archive_give_the_same_answers(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN the answers of a live log to a regex, a filtered and a plain query
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    queries = ["q=package-%5B37%5D%24&regex=true", "q=package&source=stderr", "q=error&phase=build", "q=nothing"]
    live = [api.call("GET", f"/builds/{build_id}/logs/search?{query}").body for query in queries]
    assert [page["total"] for page in live] == [4, 1, 1, 0]  # package-3 and -7: fetch lines, stderr, ERROR
    assert [entry["text"] for entry in live[1]["matches"]] == ["npm WARN Deprecated package-3"]
    # WHEN the log is archived and its stream expires THEN the answers are the same
    archive_and_expire(redis_url, api.s3, build_id)
    assert [api.call("GET", f"/builds/{build_id}/logs/search?{query}").body for query in queries] == live


@pytest.mark.parametrize(
    ("query", "error", "field"),
    [
        ("q=(unclosed&regex=true", "invalid_query", "q"),
        ("q=" + "x" * 257, "invalid_query", "q"),
        ("q=", "invalid_query", "q"),
        ("regex=true", "invalid_request", "q"),
        ("q=x&after=yesterday", "invalid_cursor", "after"),
        ("q=x&limit=0", "invalid_request", "limit"),
    ],
)
def test_bad_queries_are_a_400_with_the_reason(
    api: Api, redis_url: str, build_id: str, query: str, error: str, field: str
) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    response = api.call("GET", f"/builds/{build_id}/logs/search?{query}")
    assert response.status == 400
    assert (response.body["error"], response.body["field"]) == (error, field)
    assert response.body["message"]


def test_an_invalid_regex_says_why(api: Api, build_id: str) -> None:
    _submit(api, build_id)
    response = api.call("GET", f"/builds/{build_id}/logs/search?q=a(b&regex=true")
    assert response.status == 400
    assert response.body["message"].startswith("invalid regex")


def test_unknown_build_is_a_404_and_redis_down_a_503(api: Api, build_id: str) -> None:
    assert api.call("GET", f"/builds/{build_id}/logs/search?q=x").status == 404
    _submit(api, build_id)
    with redis_down():
        response = raw_call(f"/builds/{build_id}/logs/search?q=x")
    assert response.status == 503
    assert response.header("Retry-After")


def test_a_regex_too_complex_to_scan_fast_is_a_400_and_ordinary_ones_work(
    api: Api, redis_url: str, build_id: str
) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    # GIVEN a pattern RE2 compiles to 16,006 instructions (its NFA: ~0.3 s per 16 KiB line)
    response = api.call("GET", f"/builds/{build_id}/logs/search?q=.%7B1000%7D.%7B1000%7D%24Z&regex=true")
    # THEN it is refused at once with the reason
    assert response.status == 400
    assert (response.body["error"], response.body["field"]) == ("invalid_query", "q")
    assert response.body["message"].startswith("regex too complex")
    # AND ordinary patterns still search
    for pattern in ["error%7Cwarn", "package-%5B0-9%5D%7B2%7D", "%5Ba-f0-9%5D%7B40%7D"]:
        assert api.call("GET", f"/builds/{build_id}/logs/search?q={pattern}&regex=true").status == 200


@pytest.mark.parametrize("archived_log", [False, True], ids=["live", "archived"])
def test_a_search_past_its_deadline_is_a_503_search_timeout(
    api: Api, redis_url: str, build_id: str, archived_log: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    if archived_log:
        archive_and_expire(redis_url, api.s3, build_id)
    # GIVEN a deadline already reached when the scan starts
    monkeypatch.setattr(search, "SEARCH_DEADLINE_SECONDS", 0.0)
    # WHEN the log is searched THEN the answer is a clear 503 saying to narrow the query, never a 500
    response = raw_call(f"/builds/{build_id}/logs/search?q=package")
    assert response.status == 503
    body = response.json()
    assert (body["error"], body["field"]) == ("search_timeout", "q")
    assert "narrow the query" in body["message"]
    assert response.header("Retry-After") is None  # retrying the same query does not help

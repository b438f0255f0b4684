"""The local API answers concurrent requests each with its own route (as a browser sends them)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.api import Api, serve_api, spec, write_log

pytestmark = [pytest.mark.redis]


def test_concurrent_requests_beside_a_long_poll_each_get_their_own_route(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a build with a log, and a long-poll waiting for its next entry
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, [("stage", "build", {}), *[("stdout", f"line {n}", {}) for n in range(50)]])
    with serve_api() as root, httpx.Client(base_url=root, timeout=30) as http:
        last = http.get(f"/builds/{build_id}/logs", params={"tail": 1}).json()["next"]
        polled: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: polled.append(
                http.get(f"/builds/{build_id}/logs", params={"after": last, "wait": 10, "limit": 1})
            )
        )
        poll.start()

        # WHEN status, tail and forward reads run at once, many times, on other threads, and the
        # long-poll's line is written while they run
        def one(index: int) -> tuple[str, httpx.Response]:
            if index == 100:
                write_log(redis_url, build_id, [("stdout", "the next line", {})])
            kind = ("status", "tail", "after")[index % 3]
            if kind == "status":
                return kind, http.get(f"/builds/{build_id}")
            if kind == "tail":
                return kind, http.get(f"/builds/{build_id}/logs", params={"tail": 5})
            return kind, http.get(f"/builds/{build_id}/logs", params={"after": "0-0", "limit": 3})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(300)))
        poll.join(20)
    # THEN every answer is its own route's, and the long-poll got the next line
    for kind, response in answers:
        assert response.status_code == 200, (kind, response.text)
        body = response.json()
        if kind == "status":
            assert body["build_id"] == build_id
        else:
            assert len(body["entries"]) == (5 if kind == "tail" else 3)
    assert polled[0].status_code == 200, polled[0].text
    assert [e["text"] for e in polled[0].json()["entries"] if e["source"] != "system"] == ["the next line"]

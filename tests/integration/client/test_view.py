"""`buildlogs view`: the viewer proxy on 127.0.0.1 in front of the local API (real Redis, moto)
and in front of a deployed API (an in-memory transport that records what it was sent)."""

import asyncio
import io
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.credentials import Credentials

from buildlogs.client.cli import main
from buildlogs.client.view import serve_view
from tests.support.api import Api, serve_api, spec, write_log
from tests.support.sandbox import eventually

pytestmark = [pytest.mark.redis]

DEPLOYED = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"


def test_the_proxy_serves_the_page_and_forwards_the_builds_routes(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a build with a log on the local API, and the proxy for it
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, [("stage", "build", {}), ("stdout", "hello", {})])
    with serve_api() as root, serve_view(root, build_id) as page_url:
        base = page_url.rsplit("/builds/", 1)[0]
        with httpx.Client(base_url=base) as http:
            # WHEN the page and its API calls are fetched through it
            page = http.get(f"/builds/{build_id}/view")
            logs = http.get(f"/builds/{build_id}/logs", params={"after": "0-0"})
            direct = httpx.get(f"{root}/builds/{build_id}/logs", params={"after": "0-0"})
            status = http.get(f"/builds/{build_id}")
            # THEN the page is the viewer and the API's answers come through unchanged
            assert page_url == f"{base}/builds/{build_id}/view"
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert "<title>build log</title>" in page.text
            assert logs.status_code == 200
            assert logs.headers["content-type"] == "application/json"
            assert logs.json() == direct.json()
            assert [e["text"] for e in logs.json()["entries"]][-1] == "hello"
            assert status.json()["build_id"] == build_id
            # AND nothing else goes through: other builds, other methods, another Host
            assert http.get("/builds/someone-else/logs").status_code == 404
            assert http.get("/builds").status_code == 404
            refused = http.post(f"/builds/{build_id}/cancel")
            assert refused.status_code == 405
            assert refused.headers["allow"] == "GET"
            assert http.get(f"/builds/{build_id}/logs", headers={"Host": "evil.example:80"}).status_code == 403
    assert api.call("GET", f"/builds/{build_id}").body["status"] == "RUNNING"  # the POST never reached it


def test_the_proxy_signs_for_a_deployed_api_and_streams_the_answer_through(build_id: str) -> None:
    # GIVEN a deployed API (in memory) that streams its answer in two parts, the second only once
    # the first has reached the proxy's client
    seen: list[httpx.Request] = []
    first_part_received = threading.Event()

    def body() -> Iterator[bytes]:
        yield b": heartbeat\n\n"
        assert first_part_received.wait(10)
        yield b"id: 1-0\ndata: {}\n\n"

    def deployed(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/logs.txt"):
            return httpx.Response(302, headers={"Location": "https://bucket.s3.amazonaws.com/x?sig=1"})
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body())

    credentials = Credentials("AKIDEXAMPLE", "secret")
    with serve_view(DEPLOYED, build_id, transport=httpx.MockTransport(deployed), credentials=credentials) as url:
        base = url.rsplit("/builds/", 1)[0]
        # WHEN the page's event stream and download go through the proxy
        with httpx.Client(base_url=base, timeout=10) as http:
            with http.stream(
                "GET",
                f"/builds/{build_id}/events?after=0-0",
                headers={"Last-Event-ID": "0-5", "Accept": "text/event-stream"},
            ) as events:
                parts = events.iter_bytes()
                first = next(parts)
                first_part_received.set()
                rest = b"".join(parts)
            download = http.get(f"/builds/{build_id}/logs.txt")
    # THEN the API got SigV4-signed requests for its stage path, with Last-Event-ID
    request = seen[0]
    assert str(request.url) == f"{DEPLOYED}/builds/{build_id}/events?after=0-0"
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in request.headers["authorization"]
    assert request.headers["last-event-id"] == "0-5"
    assert request.headers["x-amz-date"]
    # AND the answer streamed through part by part, with its type; a redirect is passed on as it is
    assert events.status_code == 200
    assert events.headers["content-type"] == "text/event-stream"
    assert first + rest == b": heartbeat\n\nid: 1-0\ndata: {}\n\n"
    assert download.status_code == 302
    assert download.headers["location"] == "https://bucket.s3.amazonaws.com/x?sig=1"


def _raw_get(url: str, target: str) -> int:
    """The status of ``GET <target>`` sent byte for byte on a socket (httpx would normalise it first)."""
    address = urlsplit(url)
    host, port = address.hostname or "", address.port or 80
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


ESCAPES = [
    "/builds/{id}/../other/logs",
    "/builds/{id}/..",
    "/builds/{id}/../",
    "/builds/{id}/../../openapi.json",
    "/builds/{id}/logs/../../other/logs",
    "/builds/{id}/./logs",
    "/builds/{id}//logs",
    "/builds/{id}/logs/",
    "/builds/{id}/%2e%2e/other/logs",
    "/builds/{id}/%2E%2E/other/logs",
    "/builds/{id}%2f..%2fother/logs",
    "/builds/{id}/logs%2F..%2F..",
    "/builds/{id}/%5c../other/logs",
    "/builds/{id}\\..\\other/logs",
    "/builds/%7Bid%7D/logs",
    "http://evil.example/builds/{id}/logs",
    "https://evil.example/builds/{id}/logs?tail=5",
    "//evil.example/builds/{id}/logs",
    "/builds/{id}/cancel",
    "/builds/{id}/logs/search/more",
    "/builds/{id}/events/x",
]


@pytest.mark.parametrize("target", ESCAPES)
def test_the_proxy_refuses_any_target_but_the_builds_known_routes_and_forwards_nothing(
    build_id: str, target: str
) -> None:
    # GIVEN the proxy in front of a deployed API (in memory) that records every request it gets
    seen: list[httpx.Request] = []

    def deployed(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entries": []})

    credentials = Credentials("AKIDEXAMPLE", "secret")
    with serve_view(DEPLOYED, build_id, transport=httpx.MockTransport(deployed), credentials=credentials) as url:
        # WHEN a request target that escapes the build's routes (dot segments, encoded dots or
        # slashes, absolute-form, unknown routes) is sent as it is
        refused = _raw_get(url, target.replace("{id}", build_id))
        # AND a known route with a query is sent the same way
        allowed = _raw_get(url, f"/builds/{build_id}/logs/search?q=a%2F..%2Fb&limit=5")
    # THEN the escape is a 404 and the API never saw it; the known route is forwarded as it reads
    assert refused == 404
    assert allowed == 200
    assert [str(request.url) for request in seen] == [f"{DEPLOYED}/builds/{build_id}/logs/search?q=a%2F..%2Fb&limit=5"]


def test_view_prints_the_page_url_and_serves_until_stopped(api: Api, build_id: str) -> None:
    # GIVEN a build on the local API
    api.call("POST", "/builds", spec(build_id=build_id))
    out, stop, result = io.StringIO(), threading.Event(), []
    with serve_api() as root:
        # WHEN `buildlogs view` runs
        thread = threading.Thread(
            target=lambda: result.append(main(["view", build_id, "--api", root], out=out, stop=stop))
        )
        thread.start()
        asyncio.run(eventually(lambda: "/view" in out.getvalue() or not thread.is_alive(), what="the printed URL"))
        url = out.getvalue().strip()
        # THEN it prints the page's URL on 127.0.0.1, which serves the viewer, until stopped
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith(f"/builds/{build_id}/view")
        assert "<title>build log</title>" in httpx.get(url).text
        stop.set()
        thread.join(10)
    assert result == [0]


def test_view_of_an_unknown_build_or_a_bad_id_exits_3(api: Api, build_id: str) -> None:
    err = io.StringIO()
    with serve_api() as root:
        # WHEN the build does not exist, or the id is not one
        unknown = main(["view", build_id, "--api", root], err=err)
        bad = main(["view", "../etc", "--api", root], err=err)
    # THEN it says so and exits 3 without serving anything
    assert (unknown, bad) == (3, 3)
    assert f"no build {build_id}" in err.getvalue()
    assert "invalid build id" in err.getvalue()

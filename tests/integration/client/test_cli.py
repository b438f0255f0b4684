"""The client CLI against a local API served by the tests (localhost: unsigned), moto and real Redis."""

import asyncio
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from redis.asyncio import Redis

from buildlogs.client.cli import main
from buildlogs.client.http import RetryPolicy
from buildlogs.settings import get_settings
from buildlogs.stream.streamer import LogStreamer
from tests.support.api import Api, serve_api, spec, write_log

pytestmark = [pytest.mark.redis]


def _log(status: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("stage", "build", {}),
        ("stdout", "compiling", {}),
        ("stderr", "warning: slow", {}),
        ("end_stage", "", {"exit_code": 0}),
        ("event", f"end of log: {status}", {"event": "end", "status": status}),
    ]


def test_submit_prints_the_build_id_and_its_urls(api: Api, tmp_path: Path, build_id: str) -> None:
    # GIVEN a spec file
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(build_id=build_id)))
    out = io.StringIO()
    with serve_api() as url:
        # WHEN it is submitted with the CLI
        code = main(["--api", url, "submit", str(path)], out=out)
    # THEN it exits 0 printing the id and absolute URLs, and the build runs
    assert code == 0
    assert out.getvalue().splitlines() == [
        build_id,
        f"status: {url}/builds/{build_id}",
        f"logs:   {url}/builds/{build_id}/logs",
    ]
    assert api.call("GET", f"/builds/{build_id}").body["status"] == "RUNNING"


@pytest.mark.parametrize(("status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("TIMED_OUT", 2), ("ABORTED", 2)])
def test_tail_prints_the_log_and_exits_with_the_build_result(
    api: Api, redis_url: str, build_id: str, status: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a build whose log ended with ``status``
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, _log(status))
    out = io.StringIO()
    with serve_api() as url:
        monkeypatch.setenv("BUILDLOGS_API_URL", url)  # the setting, not --api
        get_settings.cache_clear()
        # WHEN tail follows it
        exit_code = main(["tail", build_id], out=out)
    # THEN every line is printed (uncoloured off a terminal), then the summary; the exit code is the result's
    assert exit_code == code
    log, summary = out.getvalue().split("\n\n", 1)
    lines = log.splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[1:3] == ["[      build]   compiling", "[      build] ! warning: slow"]
    assert lines[3].startswith("[      build] ✓ build finished · ")
    assert lines[3].endswith(" · exit 0")
    assert lines[-1] == f"[      build] # end of log: {status}"
    assert len(lines) == len(_log(status))
    rows = [re.split(r"\s{2,}", line.strip()) for line in summary.splitlines()]
    assert ["result", build_id, status] in rows
    assert ["lines", str(len(_log(status)))] in rows
    assert any(row[:2] == ["build", "✓ succeeded"] for row in rows)


def test_tail_colours_lines_when_forced(
    api: Api, redis_url: str, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, _log("SUCCEEDED"))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    with serve_api() as url:
        assert main(["--api", url, "tail", build_id], out=out) == 0
    assert "\033[31m ! \033[0m\033[31mwarning: slow" in out.getvalue()


async def test_tail_follows_a_live_build_with_long_polls(api: Api, redis: Redis, build_id: str) -> None:
    # GIVEN tail started before the build writes anything
    api.call("POST", "/builds", spec(build_id=build_id))
    out = io.StringIO()
    with serve_api() as url:
        started = time.monotonic()
        tail = asyncio.create_task(asyncio.to_thread(main, ["--api", url, "tail", build_id], out=out))
        # WHEN the build writes its log while tail waits
        deadline = time.monotonic() + 10
        while not any(c.get("cmd") == "xread" for c in await redis.client_list()):
            assert time.monotonic() < deadline, "tail never long-polled"
        streamer = LogStreamer(redis, build_id, "build", flush_interval_ms=0)
        await streamer.stage("build")
        await streamer.on_stdout("hello from the build\n")
        await streamer.write_event("end of log: FAILED", event="end", status="FAILED")
        await streamer.close()
        code = await asyncio.wait_for(tail, timeout=20)
    # THEN tail printed the lines as they came and exited with FAILED's code, well before a 20 s wait
    assert code == 1
    assert out.getvalue().splitlines()[1] == "[      build]   hello from the build"
    assert time.monotonic() - started < 15


def test_tail_of_an_unknown_build_exits_3(api: Api, build_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_api() as url:
        assert main(["--api", url, "tail", build_id]) == 3
    assert f"HTTP 404: no build {build_id}" in capsys.readouterr().err


# -- transient errors: a local API that fails, then serves ---------------------------------------


class _FlakyFront(BaseHTTPRequestHandler):
    """Answers 503 (API Gateway's shape) while ``failures_left``; then forwards to the real local API."""

    upstream: ClassVar[str] = ""
    url: ClassVar[str] = ""
    failures_left: ClassVar[int] = 0
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # the http.server hook name
        cls = type(self)
        cls.requests.append(self.path)
        if cls.failures_left > 0:
            cls.failures_left -= 1
            self._reply(503, b'{"error": "internal_error", "message": "Service Unavailable"}')
            return
        response = httpx.get(cls.upstream + self.path, timeout=30)
        self._reply(response.status_code, response.content)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return


@contextmanager
def flaky_front(upstream: str, failures: int) -> Iterator[type[_FlakyFront]]:
    """A local HTTP server in front of ``upstream`` whose first ``failures`` requests get a 503."""
    handler: type[_FlakyFront] = type(
        "Front", (_FlakyFront,), {"upstream": upstream, "failures_left": failures, "requests": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        handler.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tail_rides_out_503s_and_prints_every_entry_once(
    api: Api, redis_url: str, build_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a finished build behind a local API that answers 503 three times first
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, _log("TIMED_OUT"))
    sleeps: list[float] = []
    out = io.StringIO()
    with serve_api() as upstream, flaky_front(upstream, failures=3) as front:
        # WHEN tail follows it (backoff sleeps recorded, never slept)
        code = main(
            ["--api", front.url, "tail", build_id],
            out=out,
            retry=RetryPolicy(sleep=sleeps.append),
        )
    # THEN every entry is printed exactly once and the exit code is the build's
    assert code == 2
    lines = out.getvalue().split("\n\n")[0].splitlines()
    assert len(lines) == len(_log("TIMED_OUT"))
    assert lines[1:3] == ["[      build]   compiling", "[      build] ! warning: slow"]
    assert lines[-1] == "[      build] # end of log: TIMED_OUT"
    # AND it retried the same request after 0.5, 1 and 2 s, with one notice on stderr
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(set(front.requests[:4])) == 1
    (notice,) = capsys.readouterr().err.splitlines()
    assert notice.startswith("buildlogs: HTTP 503: Service Unavailable; retrying")


def test_tail_of_an_unknown_build_exits_3_without_retrying(
    api: Api, build_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local API that does not know the build
    sleeps: list[float] = []
    with serve_api() as upstream, flaky_front(upstream, failures=0) as front:
        # WHEN tail follows it
        code = main(["--api", front.url, "tail", build_id], retry=RetryPolicy(sleep=sleeps.append))
    # THEN it exits 3 after a single request, no backoff, no retry notice
    assert code == 3
    assert len(front.requests) == 1
    assert sleeps == []
    assert capsys.readouterr().err.splitlines() == [f"buildlogs: HTTP 404: no build {build_id}"]

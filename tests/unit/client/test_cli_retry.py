"""``buildlogs tail`` rides out transient errors: an in-memory API that fails, then serves (no network).

The backoff's sleep and clock are fakes: no test waits on the clock.
"""

import io
import json
import socket
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from buildlogs.client.cli import ApiError, Backoff, HttpRequest, HttpResponse, main, urllib_transport
from buildlogs.client.console import RESET

API = "http://127.0.0.1:9"  # localhost: unsigned; never reached (the transport is in memory)
BUILD = "b1"
PAGE = 2  # entries per page: a log of 7 entries takes 4 pages
NETWORK = "network"  # a planned failure that never reaches the API


def _entries(count: int, status: str) -> list[dict[str, object]]:
    lines = [
        {"id": f"1700000000000-{i}", "ts": 1_700_000_000_000, "source": "stdout", "text": f"line {i}", "phase": "build"}
        for i in range(1, count)
    ]
    end = {
        "id": f"1700000000000-{count}",
        "ts": 1_700_000_000_000,
        "source": "system",
        "text": f"end of log: {status}",
        "phase": "build",
        "event": "end",
        "status": status,
    }
    return [*lines, end]


@dataclass
class FlakyApi:
    """GET /builds/b1/logs served from ``entries`` (``PAGE`` per page); each request first consumes
    one planned failure (an HTTP status or ``NETWORK``) while any remain."""

    entries: list[dict[str, object]]
    failures: list[int | str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        after = parse_qs(parts.query).get("after", ["0-0"])[0]
        self.requests.append(after)
        if self.failures:
            failure = self.failures.pop(0)
            if failure == NETWORK:
                raise ApiError(0, "cannot reach the API: connection reset", network=True)
            body = {"error": "service_unavailable", "message": f"planned {failure}"}
            return HttpResponse(int(failure), json.dumps(body).encode())
        if parts.path != f"/builds/{BUILD}/logs":
            return HttpResponse(404, b'{"error": "not_found", "message": "no build"}')
        ids = [str(e["id"]) for e in self.entries]
        start = ids.index(after) + 1 if after in ids else 0
        page = self.entries[start : start + PAGE]
        done = start + PAGE >= len(self.entries)
        cursor = str(page[-1]["id"]) if page else after
        return HttpResponse(200, json.dumps({"entries": page, "next": cursor, "done": done}).encode())


@dataclass
class FakeClock:
    """``sleep`` advances ``now``; records every delay."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def backoff(self) -> Backoff:
        return Backoff(sleep=self.sleep, clock=self.clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def _tail(api: FlakyApi, clock: FakeClock) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(["--api", API, "tail", BUILD], transport=api, out=out, backoff=clock.backoff())
    return code, out.getvalue().splitlines()


def _texts(lines: list[str]) -> list[str]:
    return [line.split("] ", 1)[1][2:] for line in lines]


def test_tail_prints_every_entry_once_across_503s_and_exits_with_the_build_result(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an API that answers 503 three times before the first page
    api = FlakyApi(_entries(7, "FAILED"), failures=[503, 503, 503])
    # WHEN tail follows the build
    code, lines = _tail(api, clock)
    # THEN every entry is printed exactly once, in order, and the exit code is FAILED's
    assert _texts(lines) == [f"line {i}" for i in range(1, 7)] + ["end of log: FAILED"]
    assert code == 1
    # AND it backed off 0.5, 1, 2 s (injected sleep) with a single notice for the outage
    assert clock.sleeps == [0.5, 1.0, 2.0]
    err = capsys.readouterr().err.splitlines()
    assert err == ["buildlogs: HTTP 503: planned 503; retrying (the log resumes where it stopped)"]


def test_a_failure_between_pages_resumes_from_the_same_cursor(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an API that serves the first page, then fails with each transient kind, then serves
    api = FlakyApi(_entries(7, "SUCCEEDED"))
    served_first_page = api.__call__

    def transport(request: HttpRequest) -> HttpResponse:
        response = served_first_page(request)
        if len(api.requests) == 1:  # after the first page: an outage of every transient kind
            api.failures.extend([502, 504, 429, NETWORK])
        return response

    out = io.StringIO()
    # WHEN tail follows the build
    code = main(["--api", API, "tail", BUILD], transport=transport, out=out, backoff=clock.backoff())
    # THEN no entry is skipped or repeated: each retry asked for the same cursor
    assert _texts(out.getvalue().splitlines()) == [f"line {i}" for i in range(1, 7)] + ["end of log: SUCCEEDED"]
    assert code == 0
    second_cursor = "1700000000000-2"
    assert api.requests[:6] == ["0-0"] + [second_cursor] * 5
    # AND one notice for the whole outage, with backoff doubling
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_one_notice_per_outage(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two separate outages (one before the first page, one after it)
    api = FlakyApi(_entries(3, "SUCCEEDED"), failures=[503])
    inner = api.__call__

    def transport(request: HttpRequest) -> HttpResponse:
        response = inner(request)
        if len(api.requests) == 2:  # the first page was just served
            api.failures.append(504)
        return response

    # WHEN tail follows the build
    code = main(["--api", API, "tail", BUILD], transport=transport, out=io.StringIO(), backoff=clock.backoff())
    # THEN each outage gets its notice, and the backoff restarts at the first delay
    assert code == 0
    assert [line.split(";")[0] for line in capsys.readouterr().err.splitlines()] == [
        "buildlogs: HTTP 503: planned 503",
        "buildlogs: HTTP 504: planned 504",
    ]
    assert clock.sleeps == [0.5, 0.5]


def test_the_notice_is_dim_on_a_colour_terminal(
    clock: FakeClock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    api = FlakyApi(_entries(2, "SUCCEEDED"), failures=[503])
    assert _tail(api, clock)[0] == 0
    (notice,) = capsys.readouterr().err.splitlines()
    assert notice.startswith("\033[2mbuildlogs: HTTP 503")
    assert notice.endswith(RESET)


def test_a_404_exits_3_at_once_without_retrying(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that does not know the build
    api = FlakyApi(_entries(2, "SUCCEEDED"), failures=[404])
    # WHEN tail follows it
    code, lines = _tail(api, clock)
    # THEN it exits 3 after one request, without sleeping or printing a retry notice
    assert code == 3
    assert lines == []
    assert len(api.requests) == 1
    assert clock.sleeps == []
    assert capsys.readouterr().err.splitlines() == ["buildlogs: HTTP 404: planned 404"]


@pytest.mark.parametrize("status", [400, 403, 409, 500])
def test_other_errors_are_not_retried(clock: FakeClock, status: int) -> None:
    api = FlakyApi(_entries(2, "SUCCEEDED"), failures=[status])
    assert _tail(api, clock)[0] == 3
    assert len(api.requests) == 1
    assert clock.sleeps == []


def test_an_outage_longer_than_two_minutes_exits_3(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that never recovers
    api = FlakyApi(_entries(2, "SUCCEEDED"), failures=[503] * 1000)
    # WHEN tail follows the build
    code, lines = _tail(api, clock)
    # THEN it gives up with 3 once the next wait would pass two minutes of consecutive failures
    assert code == 3
    assert lines == []
    assert clock.sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped at 8 s
    assert max(clock.sleeps) == 8.0
    assert 112 <= sum(clock.sleeps) <= 120
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("buildlogs: HTTP 503: planned 503; retrying")
    assert err[-1] == "buildlogs: HTTP 503: planned 503"
    assert len(err) == 2


def test_backoff_counts_time_spent_in_requests_too() -> None:
    # GIVEN requests that each take 50 s before failing (a hanging network)
    clock = FakeClock()
    calls: list[float] = []

    def slow_failure() -> None:
        calls.append(clock.now)
        clock.now += 50
        raise ApiError(0, "cannot reach the API: timed out", network=True)

    # WHEN it is called with the backoff
    with pytest.raises(ApiError, match="timed out"):
        Backoff(sleep=clock.sleep, clock=clock.clock).call(slow_failure, lambda _exc: None)
    # THEN the outage counts from the first attempt's start: no attempt starts past two minutes
    assert calls == [0.0, 50.5, 101.5]
    assert clock.sleeps == [0.5, 1.0]


def test_an_unreachable_api_is_a_transient_network_error() -> None:
    # GIVEN a local port nothing listens on (bound, then closed)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = HttpRequest("GET", f"http://127.0.0.1:{port}/builds", {})
    # WHEN the real transport sends to it
    with pytest.raises(ApiError) as caught:
        urllib_transport(request)
    # THEN the error is a network error, which tail retries
    assert caught.value.network
    assert caught.value.transient


def test_a_non_http_url_is_not_transient() -> None:
    with pytest.raises(ApiError) as caught:
        urllib_transport(HttpRequest("GET", "ftp://127.0.0.1/builds", {}))
    assert not caught.value.transient


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"", b"[1, 2]", b'{"entries": "nope"}'])
def test_a_200_that_is_not_a_log_page_exits_3_with_a_reason(
    clock: FakeClock, capsys: pytest.CaptureFixture[str], body: bytes
) -> None:
    # GIVEN something between us and the API answering 200 with a body that is no log page
    def transport(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, body)

    # WHEN tail follows the build
    code = main(["--api", API, "tail", BUILD], transport=transport, out=io.StringIO(), backoff=clock.backoff())
    # THEN it exits 3 with one clear line, no traceback
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("buildlogs: HTTP 200: ")
    assert "Traceback" not in err

"""``buildlogs tail`` rides out transient errors: an in-memory API that fails, then serves (no network).

The retry policy's sleep and clock are fakes: no test waits on the clock. ``--json`` keeps stdout to
the entries alone, so "every entry exactly once, in order" is checked on their ids.
"""

import io
import json
import socket
import time
from dataclasses import dataclass, field

import httpx
import pytest

from buildlogs.client.cli import main
from buildlogs.client.http import ApiClient, ApiError, RetryPolicy
from tests.support.fake_api import API, BUILD, FakeApi, ids, log

NOTICE = "buildlogs: HTTP 503: planned 503; retrying (the log resumes where it stopped)"


def reset() -> httpx.ReadError:
    """A network failure after the connection opened (retried)."""
    return httpx.ReadError("connection reset by peer")


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

    def policy(self) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=self.clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def _tail(api: FakeApi, clock: FakeClock, *extra: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(
        ["--api", API, "tail", BUILD, "--json", *extra], transport=api.transport(), out=out, retry=clock.policy()
    )
    return code, out.getvalue().splitlines()


def _printed_ids(lines: list[str]) -> list[str]:
    return [json.loads(line)["id"] for line in lines]


def test_tail_prints_every_entry_once_across_503s_and_exits_with_the_build_result(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an API that answers 503 three times before the first page
    api = FakeApi(log(7, "FAILED"), failures=[503, 503, 503])
    # WHEN tail follows the build
    code, lines = _tail(api, clock)
    # THEN every entry is printed exactly once, in order, and the exit code is FAILED's
    assert _printed_ids(lines) == ids(api.entries)
    assert code == 1
    # AND it backed off 0.5, 1, 2 s (injected sleep) on the same cursor, with a single notice for the outage
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert api.cursors[:4] == ["0-0"] * 4
    assert capsys.readouterr().err.splitlines() == [NOTICE]


def test_a_failure_between_pages_resumes_from_the_same_cursor(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an API that serves the first page, then fails with each transient kind, then serves
    api = FakeApi(log(7, "SUCCEEDED"))

    def transport(request: httpx.Request) -> httpx.Response:
        response = api(request)
        if len(api.requests) == 1:  # after the first page: an outage of every transient kind
            api.failures.extend([502, 504, 429, reset()])
        return response

    out = io.StringIO()
    # WHEN tail follows the build
    code = main(
        ["--api", API, "tail", BUILD, "--json"], transport=httpx.MockTransport(transport), out=out, retry=clock.policy()
    )
    # THEN no entry is skipped or repeated: each retry asked for the same cursor
    assert _printed_ids(out.getvalue().splitlines()) == ids(api.entries)
    assert code == 0
    second_cursor = "1700000000000-2"
    assert api.cursors[:6] == ["0-0"] + [second_cursor] * 5
    # AND one notice for the whole outage, with backoff doubling
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_one_notice_per_outage(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two separate outages (one before the first page, one after it)
    api = FakeApi(log(3, "SUCCEEDED"), failures=[503])

    def transport(request: httpx.Request) -> httpx.Response:
        response = api(request)
        if len(api.requests) == 2:  # the first page was just served
            api.failures.append(504)
        return response

    # WHEN tail follows the build
    code = main(
        ["--api", API, "tail", BUILD, "--json"],
        transport=httpx.MockTransport(transport),
        out=io.StringIO(),
        retry=clock.policy(),
    )
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
    api = FakeApi(log(2, "SUCCEEDED"), failures=[503])
    assert _tail(api, clock)[0] == 0
    (notice,) = capsys.readouterr().err.splitlines()
    assert notice == f"\033[2m{NOTICE}\033[0m"


def test_a_404_exits_3_at_once_without_retrying(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that does not know the build
    api = FakeApi(log(2, "SUCCEEDED"), failures=[404], error_body={"error": "not_found", "message": "no build b1"})
    # WHEN tail follows it
    code, lines = _tail(api, clock)
    # THEN it exits 3 after one request, without sleeping or printing a retry notice
    assert code == 3
    assert lines == []
    assert len(api.requests) == 1
    assert clock.sleeps == []
    assert capsys.readouterr().err.splitlines() == ["buildlogs: HTTP 404: no build b1"]


@pytest.mark.parametrize("status", [400, 403, 409, 413, 500])
def test_other_errors_are_not_retried(clock: FakeClock, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(log(2, "SUCCEEDED"), failures=[status])
    assert _tail(api, clock)[0] == 3
    assert len(api.requests) == 1
    assert clock.sleeps == []
    assert capsys.readouterr().err.splitlines() == [f"buildlogs: HTTP {status}: planned {status}"]


def test_an_outage_longer_than_two_minutes_exits_3(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that never recovers
    api = FakeApi(log(2, "SUCCEEDED"), failures=[503] * 1000)
    # WHEN tail follows the build
    code, lines = _tail(api, clock)
    # THEN it gives up with 3 once the next wait would pass two minutes of consecutive failures
    assert code == 3
    assert lines == []
    assert clock.sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped at 8 s
    assert max(clock.sleeps) == 8.0
    assert 112 <= sum(clock.sleeps) <= 120
    err = capsys.readouterr().err.splitlines()
    assert err == [NOTICE, "buildlogs: HTTP 503: planned 503"]


def test_retry_after_is_honoured_up_to_the_cap(clock: FakeClock) -> None:
    # GIVEN a throttled API that asks for 3 s, then for 60 s
    api = FakeApi(log(2, "SUCCEEDED"), failures=[429, 429], retry_after="3")

    def transport(request: httpx.Request) -> httpx.Response:
        if len(api.requests) == 1:
            api.retry_after = "60"
        return api(request)

    # WHEN tail follows the build
    code = main(
        ["--api", API, "tail", BUILD, "--json"],
        transport=httpx.MockTransport(transport),
        out=io.StringIO(),
        retry=clock.policy(),
    )
    # THEN it waited what the API asked (above the backoff's own 0.5 s), but never past the 8 s cap
    assert code == 0
    assert clock.sleeps == [3.0, 8.0]


def test_the_retry_policy_counts_time_spent_in_requests_too() -> None:
    # GIVEN requests that each take 50 s before failing (a hanging network)
    clock = FakeClock()
    calls: list[float] = []

    def slow_failure() -> None:
        calls.append(clock.now)
        clock.now += 50
        raise ApiError(0, "cannot reach the API: timed out", network=True)

    notices: list[ApiError] = []
    # WHEN it is called under the policy
    with pytest.raises(ApiError, match="timed out"):
        clock.policy().call(slow_failure, notices.append)
    # THEN the outage counts from the first attempt's start: no attempt starts past two minutes
    assert calls == [0.0, 50.5, 101.5]
    assert clock.sleeps == [0.5, 1.0]
    assert len(notices) == 1


def _closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_local_api_fails_at_once_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a local API URL nothing listens on, and the real retry policy (real sleeps)
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    # WHEN tail follows a build there, over the real network stack
    code = main(["tail", BUILD, "--api", url])
    # THEN it exits 3 within seconds (no two-minute silent retry) saying what is wrong
    assert code == 3
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err.splitlines() == [f"buildlogs: cannot reach the local API at {url} (connection refused): is it running?"]


def test_a_network_error_on_a_deployed_api_is_retried(clock: FakeClock) -> None:
    # GIVEN a deployed API (signed requests) whose first connection attempt fails
    api = FakeApi(log(2, "SUCCEEDED"), failures=[httpx.ConnectError("connection timed out")])
    from botocore.credentials import Credentials

    client = ApiClient(
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        transport=api.transport(),
        credentials=Credentials("AKIDEXAMPLE", "secret"),
        retry=clock.policy(),
    )
    # WHEN a page is read
    page = client.logs(BUILD, "0-0", wait=0)
    # THEN the same request was sent again after the first backoff step, and succeeded
    assert [e["id"] for e in page["entries"]] == ids(api.entries)
    assert clock.sleeps == [0.5]
    assert api.cursors == ["0-0", "0-0"]


def test_a_non_http_url_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", BUILD, "--api", "ftp://127.0.0.1/builds"]) == 3
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body", [b"<html>gateway</html>", b"", b"[1, 2]", b'{"entries": "nope"}', b'{"entries": [], "next": "0-0"}']
)
def test_a_200_that_is_not_a_log_page_exits_3_with_a_reason(
    clock: FakeClock, capsys: pytest.CaptureFixture[str], body: bytes
) -> None:
    # GIVEN something between us and the API answering 200 with a body that is no log page
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=body))
    # WHEN tail follows the build
    code = main(["--api", API, "tail", BUILD], transport=transport, out=io.StringIO(), retry=clock.policy())
    # THEN it exits 3 with one clear line, no traceback, no retry
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("buildlogs: HTTP 200: ")
    assert len(err.splitlines()) == 1
    assert clock.sleeps == []

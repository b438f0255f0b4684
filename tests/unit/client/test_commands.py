"""The commands of ``buildlogs`` against an in-memory API: --api anywhere, help with exit codes,
usage errors exit 3, Ctrl-C exits 130 without a traceback, and what each command prints."""

import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from buildlogs.client.cli import cli, main
from buildlogs.client.console import strip_ansi
from buildlogs.client.follow import EXIT_CODES, cursor_since, exit_code_for
from buildlogs.statuses import TERMINAL, ExecutionStatus
from tests.support.fake_api import API, BUILD, TS, FakeApi, end, entry, ids, log

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello-web"


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "BUILDLOGS_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def run(args: list[str], api: FakeApi) -> tuple[int, str]:
    out = io.StringIO()
    code = main(args, transport=api.transport(), out=out)
    return code, out.getvalue()


def hosts(api: FakeApi) -> set[str]:
    return {str(request.url.copy_with(path="/", query=None)) for request in api.requests}


# -- --api anywhere, and from the environment ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--api", API, "status", BUILD],
        ["status", BUILD, "--api", API],
        ["status", "--api", API, BUILD],
        ["--api", "http://127.0.0.1:1", "status", BUILD, "--api", API],  # after the command wins
    ],
)
def test_api_is_accepted_before_or_after_the_command(args: list[str]) -> None:
    api = FakeApi()
    code, _ = run(args, api)
    assert code == 0
    assert hosts(api) == {f"{API}/"}


def test_api_comes_from_the_environment_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDLOGS_API_URL", API + "/")
    api = FakeApi()
    assert run(["status", BUILD], api)[0] == 0
    assert [str(request.url) for request in api.requests] == [f"{API}/builds/{BUILD}"]


# -- help, version, usage errors -------------------------------------------------------------------


def test_help_lists_every_command_with_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    listed = help_text.split("Commands (exit codes):")[1].split("\n\n")[0].splitlines()
    for name in ("run", "submit", "tail", "status", "list", "cancel", "view"):
        assert name in cli.commands
        (index,) = [i for i, line in enumerate(listed) if line.split()[:1] == [name]]
        assert listed[index + 1].strip().startswith("exits 0 "), listed[index + 1]
        assert "3 error" in listed[index + 1]
    assert set(cli.commands) == {"run", "submit", "tail", "status", "list", "cancel", "view"}
    for code in ("0 SUCCEEDED", "1 FAILED", "2 TIMED_OUT or ABORTED", "3 an API error", "130 interrupted"):
        assert code in " ".join(help_text.split())


def test_each_command_help_ends_with_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT/ABORTED, 3 error, 130 Ctrl-C." in text
    for option in ("--phase", "--source", "--since", "--timestamps", "--json", "--api"):
        assert option in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"buildlogs \d+\.\d+\.\d+\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["nope"], "No such command 'nope'"),
        (["tail"], "Missing argument 'BUILD_ID'"),
        (["tail", BUILD, "--since", "yesterday"], "neither a duration"),
        (["tail", BUILD, "--phase", "deploy"], "'deploy' is not one of"),
        (["list", "--limit", "0"], "--limit"),
        (["run", "--sandbox", "docker"], "'docker' is not one of"),
        (["submit", "/no/such/spec.json"], "does not exist"),
        (["tail", BUILD, "--after", f"{TS}-1"], "No such option '--after'"),  # --since ID does it
    ],
)
def test_usage_errors_exit_3_not_2(args: list[str], reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    assert run(args, api)[0] == 3
    assert reason in capsys.readouterr().err
    assert api.requests == []


def test_no_command_shows_the_help_and_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 3
    assert "Commands (exit codes):" in capsys.readouterr().err


def test_the_console_script_exits_with_the_code() -> None:
    # the installed entry point, in a fresh process: a usage error's exit status is 3
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from buildlogs.client.cli import main; sys.exit(main())", "tail"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "Missing argument 'BUILD_ID'" in done.stderr


# -- Ctrl-C ------------------------------------------------------------------------------------------


def test_ctrl_c_while_following_exits_130_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API whose second page never comes: the user presses Ctrl-C while tail waits for it
    api = FakeApi(log(5, "SUCCEEDED"), failures=[])

    def transport(request: httpx.Request) -> httpx.Response:
        if len(api.requests) == 1:
            raise KeyboardInterrupt
        return api(request)

    out = io.StringIO()
    # WHEN tail follows the build
    code = main(["--api", API, "tail", BUILD], transport=httpx.MockTransport(transport), out=out)
    # THEN it exits 130 after the lines it had, saying so in one word, with no traceback
    err = capsys.readouterr().err
    assert code == 130
    assert out.getvalue().splitlines() == ["[      build]   line 1", "[      build]   line 2"]
    assert err.strip() == "interrupted"
    assert "Traceback" not in err


# -- tail ------------------------------------------------------------------------------------------


def test_tail_prints_the_log_then_the_summary_and_exits_with_the_result() -> None:
    # GIVEN a build whose log ended FAILED
    api = FakeApi(
        [
            entry(1, "--- Building project ---", source="system", event="stage_start"),
            entry(2, "compiling"),
            entry(3, "error: nope", source="stderr"),
            entry(4, "BUILD FAILED: command exited with code 2", source="system", event="build_failed"),
            entry(5, "build finished", source="system", event="stage_end", duration_ms=3_100, exit_code=2),
            end(6, "FAILED"),
        ],
        status="FAILED",
        stages=[{"name": "build", "status": "failed", "duration_ms": 3_100, "exit_code": 2}],
        archive={"uri": "s3://bucket/build-logs/b1/build.jsonl", "lines": 6},
    )
    # WHEN tail follows it
    code, out = run(["tail", BUILD, "--api", API], api)
    # THEN the log, then the summary from GET /builds/{id}; exit 1
    assert code == 1
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[:6] == [
        "[      build] # --- Building project ---",
        "[      build]   compiling",
        "[      build] ! error: nope",
        "[      build] ✗ BUILD FAILED: command exited with code 2",
        "[      build] ✗ build finished · 3.1s · exit 2",
        "[      build] # end of log: FAILED",
    ]
    summary = [re.split(r"\s{2,}", line.strip()) for line in lines[6:]]
    assert ["build", "✗ failed", "3.1s", "2"] in summary
    assert ["result", BUILD, "FAILED"] in summary
    assert ["lines", "6"] in summary
    assert ["time", "1m 05s"] in summary
    assert ["archive", "s3://bucket/build-logs/b1/build.jsonl"] in summary


@pytest.mark.parametrize(("status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("TIMED_OUT", 2), ("ABORTED", 2)])
def test_tail_json_prints_ndjson_only_and_exits_with_the_result(status: str, code: int) -> None:
    api = FakeApi(log(5, status), status=status)
    exit_code, out = run(["tail", BUILD, "--json", "--api", API], api)
    assert exit_code == code
    assert [json.loads(line) for line in out.splitlines()] == api.entries
    # the end entry told the result: no status request was needed
    assert all(request.url.path.endswith("/logs") for request in api.requests)


def test_tail_filters_ask_the_api_and_the_status_comes_from_it(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a build whose end entry is not in the filtered view (it is a system entry)
    api = FakeApi(
        [entry(1, "out"), entry(2, "err", source="stderr"), entry(3, "other", phase="install"), end(4, "TIMED_OUT")],
        status="TIMED_OUT",
    )
    # WHEN tail shows only the build stage's stderr
    code, out = run(["tail", BUILD, "--phase", "build", "--source", "stderr", "--api", API], api)
    # THEN the API was asked for that filter on every page, only that line printed, and the exit code
    # is the build's status from GET /builds/{id}
    logs = [request for request in api.requests if request.url.path.endswith("/logs")]
    assert {(r.url.params["phase"], r.url.params["source"]) for r in logs} == {("build", "stderr")}
    assert out.splitlines()[0] == "[      build] ! err"
    assert "out" not in out.split("\n\n")[0]
    assert code == 2
    assert api.requests[-1].url.path == f"/builds/{BUILD}"


def test_tail_since_an_entry_id_starts_after_it() -> None:
    api = FakeApi(log(5, "SUCCEEDED"))
    code, out = run(["tail", BUILD, "--since", f"{TS}-2", "--json", "--api", API], api)
    assert code == 0
    assert api.cursors[0] == f"{TS}-2"
    assert [json.loads(line)["id"] for line in out.splitlines()] == ids(api.entries)[2:]


def test_tail_since_a_duration_starts_that_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi(log(3, "SUCCEEDED"))
    monkeypatch.setattr("buildlogs.client.follow.time.time", lambda: 1_700_000_600.0)
    run(["tail", BUILD, "--since", "10m", "--json", "--api", API], api)
    assert api.cursors[0] == f"1699999999999-{2**64 - 1}"  # every entry of 1700000000000 ms or later


@pytest.mark.parametrize(
    ("since", "cursor"),
    [
        ("45s", f"{1_000_000 - 45_000 - 1}-{2**64 - 1}"),
        ("1h30m", "0-0"),  # before the clock's epoch: from the start
        ("250ms", f"{1_000_000 - 250 - 1}-{2**64 - 1}"),
        ("1700000000000-3", "1700000000000-3"),
    ],
)
def test_since_values(since: str, cursor: str) -> None:
    assert cursor_since(since, now=lambda: 1_000.0) == cursor


@pytest.mark.parametrize("since", ["", "10", "m", "10 m", "-5m", "1700000000000", "10y"])
def test_since_rejects_what_is_neither(since: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        cursor_since(since)


# -- submit ------------------------------------------------------------------------------------------


def test_submit_posts_the_spec_and_prints_the_id_and_urls(tmp_path: Path) -> None:
    spec = {"start": "node index.js", "port": 3000, "files": {"index.js": "x"}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    api = FakeApi()
    code, out = run(["submit", str(path), "--api", API], api)
    assert code == 0
    assert api.submitted == [spec]
    assert out.splitlines() == [BUILD, f"status: {API}/builds/{BUILD}", f"logs:   {API}/builds/{BUILD}/logs"]


def test_submit_a_project_dir_sends_its_files_and_commands() -> None:
    # GIVEN the default example project (buildspec.json + its files)
    api = FakeApi()
    # WHEN it is submitted as a directory
    code, _ = run(["submit", str(EXAMPLE), "--api", API], api)
    # THEN the API got one BuildSpec: the commands of buildspec.json and the directory's other files
    assert code == 0
    (body,) = api.submitted
    expected = json.loads((EXAMPLE / "spec.json").read_text())
    assert body["start"] == expected["start"]
    assert body["files"] == expected["files"]


def test_submit_follow_json_keeps_stdout_to_the_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"start": "x", "port": 1}')
    api = FakeApi(log(3, "FAILED"))
    code, out = run(["submit", str(path), "--follow", "--json", "--api", API], api)
    assert code == 1
    assert [json.loads(line) for line in out.splitlines()] == api.entries
    assert capsys.readouterr().err.splitlines()[0] == BUILD


def test_submit_a_400_shows_every_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that rejects the spec for three reasons
    path = tmp_path / "spec.json"
    path.write_text('{"start": "", "port": 0, "files": {"/etc/passwd": ""}}')
    body = {
        "error": "invalid_request",
        "message": "port: Input should be greater than or equal to 1 (and 2 more)",
        "field": "port",
        "reasons": [
            "port: Input should be greater than or equal to 1",
            "files./etc/passwd: absolute paths are not allowed",
            "start: must not be empty",
        ],
    }
    api = FakeApi(failures=[400], error_body=body)
    # WHEN it is submitted
    code, out = run(["submit", str(path), "--api", API], api)
    # THEN it exits 3 at once, listing every reason under the message
    assert code == 3
    assert out == ""
    assert len(api.requests) == 1
    assert capsys.readouterr().err.splitlines() == [
        "buildlogs: HTTP 400: port: Input should be greater than or equal to 1 (and 2 more)",
        "  - port: Input should be greater than or equal to 1",
        "  - files./etc/passwd: absolute paths are not allowed",
        "  - start: must not be empty",
    ]


def test_submit_is_not_retried_after_a_503_but_is_after_a_429(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"start": "x", "port": 1}')
    from buildlogs.client.http import RetryPolicy

    sleeps: list[float] = []
    for failure, code, posts in ((503, 3, 1), (429, 0, 2)):
        api = FakeApi(failures=[failure])
        result = main(
            ["submit", str(path), "--api", API],
            transport=api.transport(),
            out=io.StringIO(),
            retry=RetryPolicy(sleep=sleeps.append),
        )
        # a 503 may have started the build: a second POST could start another
        assert (result, len(api.requests)) == (code, posts)


def test_submit_an_unreadable_spec_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    api = FakeApi()
    assert run(["submit", str(path), "--api", API], api)[0] == 3
    assert f"cannot read {path}" in capsys.readouterr().err
    assert api.requests == []


# -- status, list, cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [("SUCCEEDED", 0), ("RUNNING", 0), ("PENDING", 0), ("FAILED", 1), ("ABORTED", 2)]
)
def test_status_prints_the_summary_and_exits_by_status(status: str, code: int) -> None:
    api = FakeApi(status=status, stages=[{"name": "install", "status": "succeeded", "duration_ms": 1_500}])
    exit_code, out = run(["status", BUILD, "--api", API], api)
    assert exit_code == code
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    assert ["install", "✓ succeeded", "1.5s"] in rows
    assert ["result", BUILD, status] in rows


class _RunningApi(FakeApi):
    """A build started ``ago`` and still running: no stop time; its build stage started ``stage_ago``."""

    def __init__(self, ago: timedelta, stage_ago: timedelta) -> None:
        now = datetime.now(UTC)
        stages = [
            {"name": "install", "status": "succeeded", "duration_ms": 26, "exit_code": 0},
            {"name": "build", "status": "running", "started_at": (now - stage_ago).isoformat()},
        ]
        super().__init__(status="RUNNING", stages=stages)
        self.started_at = (now - ago).isoformat()

    def status_body(self) -> dict[str, Any]:
        return {**super().status_body(), "started_at": self.started_at, "stopped_at": None}


def test_status_of_a_running_build_shows_the_time_since_it_started() -> None:
    # GIVEN a build started 3 hours ago, still running its build stage (started 90 minutes ago)
    api = _RunningApi(timedelta(hours=3), timedelta(minutes=90))
    # WHEN its status is shown
    code, out = run(["status", BUILD, "--api", API], api)
    # THEN the time is the time since it started, not the 26 ms of the one stage that finished,
    # and the running stage shows its time so far
    assert code == 0
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    assert ["time", "3h 00m so far"] in rows
    assert ["build", "… running", "1h 30m"] in rows
    assert ["install", "✓ succeeded", "26ms", "0"] in rows


def test_every_result_has_its_exit_code_and_anything_else_counts_as_failed() -> None:
    assert EXIT_CODES == {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": 2, "ABORTED": 2}
    assert set(EXIT_CODES) == {status.value for status in TERMINAL}
    assert exit_code_for(ExecutionStatus.PENDING_REDRIVE) == exit_code_for("???") == 1


def test_status_json_is_the_api_answer() -> None:
    api = FakeApi(status="RUNNING")
    code, out = run(["status", BUILD, "--json", "--api", API], api)
    assert code == 0
    assert json.loads(out) == api.status_body()


def test_status_of_an_unknown_build_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    assert run(["status", "other", "--api", API], api)[0] == 3
    assert capsys.readouterr().err.splitlines() == ["buildlogs: HTTP 404: no build other"]


LONG_ID = "release-2023-11-14-" + "a" * 45  # 64 characters, the longest build id


def test_list_off_a_terminal_prints_one_tab_separated_line_per_build_with_every_value_whole() -> None:
    # GIVEN a failed build whose id and start time take more than 80 columns together
    api = FakeApi(status="FAILED", build_id=LONG_ID)
    # WHEN list's output goes to a pipe (not a terminal)
    code, out = run(["list", "--status", "FAILED", "--limit", "5", "--api", API], api)
    # THEN the API was asked for that filter, and each build is one line of tab-separated whole values
    assert code == 0
    (request,) = api.requests
    assert dict(request.url.params) == {"limit": "5", "status": "FAILED"}
    assert out == f"{LONG_ID}\tFAILED\t2023-11-14T22:13:20+00:00\t1m 05s\n"
    assert [line.split("\t")[0] for line in out.splitlines()] == [LONG_ID]  # `cut -f1`: the ids


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_list_on_a_terminal_prints_a_table_with_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    api = FakeApi(status="FAILED", build_id=LONG_ID)
    out = _Terminal()
    assert main(["list", "--api", API], transport=api.transport(), out=out) == 0
    rows = [strip_ansi(line).split() for line in out.getvalue().splitlines()]
    assert rows == [
        ["build", "status", "started", "time"],
        [LONG_ID, "FAILED", "2023-11-14T22:13:20+00:00", "1m", "05s"],
    ]


def test_cancel_posts_and_prints_aborting() -> None:
    api = FakeApi()
    code, out = run(["cancel", BUILD, "--api", API], api)
    assert code == 0
    assert api.cancelled == [BUILD]
    assert out == f"{BUILD}: ABORTING\n"


def test_cancel_of_an_ended_build_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    body: dict[str, Any] = {"error": "conflict", "message": f"build {BUILD} is not running (SUCCEEDED)"}
    api = FakeApi(failures=[409], error_body=body)
    assert run(["cancel", BUILD, "--api", API], api)[0] == 3
    assert capsys.readouterr().err.splitlines() == [f"buildlogs: HTTP 409: build {BUILD} is not running (SUCCEEDED)"]

"""``buildlogs run`` against a fake local stack of LocalStack's shape: the log followed through the
stack's API on a background thread while the main thread waits; Ctrl-C cancels, drains, exits 130."""

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from buildlogs.client import cli as cli_module
from buildlogs.client.cli import LocalRun, main
from tests.support.fake_api import BUILD, FakeApi, end, entry

STACK_URL = "http://127.0.0.1:9/"
ARCHIVE = Path(".buildlogs/archive/build-logs") / BUILD / "build.jsonl"


@dataclass
class FakeStack:
    """LocalStack's interface over a FakeApi: each ``wait`` plays one step of ``waits`` (the entries the
    build writes, then its status, or an exception such as the user's Ctrl-C)."""

    api: FakeApi
    waits: list[tuple[list[dict[str, Any]], str | BaseException]]
    api_url: str = STACK_URL
    calls: list[str] = field(default_factory=list)
    refuse: Exception | None = None  # raised on enter: the stack cannot start
    reject: Exception | None = None  # raised by submit: the build cannot start

    def __enter__(self) -> "FakeStack":
        self.calls.append("enter")
        if self.refuse is not None:
            raise self.refuse
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append("exit")

    def submit(self, spec: Any) -> str:
        self.calls.append(f"submit {spec['name']}")
        if self.reject is not None:
            raise self.reject
        return BUILD

    def wait(self, build_id: str) -> str:
        self.calls.append(f"wait {build_id}")
        entries, outcome = self.waits.pop(0)
        self.api.publish(*entries)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def cancel(self, build_id: str) -> None:
        self.calls.append(f"cancel {build_id}")

    def archive_path(self, build_id: str) -> Path:
        return Path(".buildlogs/archive/build-logs") / build_id / "build.jsonl"


@dataclass
class Harness:
    stack: FakeStack
    specs: list[Path] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)

    def local(self) -> LocalRun:
        def load_spec(path: Path) -> dict[str, Any]:
            self.specs.append(path)
            if path.name == "broken":
                raise ValueError(f"{path}: no buildspec.json")
            return {"name": path.name}

        def config(**options: Any) -> dict[str, Any]:
            self.configs.append(options)
            return options

        def stack(config: Any) -> FakeStack:
            assert config is self.configs[-1]
            return self.stack

        return LocalRun(load_spec, config, stack)

    def run(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        code = main(["run", *args], transport=self.stack.api.transport(), out=out, local=self.local())
        return code, out.getvalue()


BUILD_LOG = [
    entry(1, "--- Building project ---", source="system", event="stage_start"),
    entry(2, "compiling"),
    entry(3, "warning: slow", source="stderr"),
    entry(4, "build finished", source="system", event="stage_end", duration_ms=1_200, exit_code=0),
]


def harness(*waits: tuple[list[dict[str, Any]], str | BaseException], **api: Any) -> Harness:
    return Harness(FakeStack(FakeApi(page_size=3, long_poll=10.0, **api), list(waits)))


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize(("status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("TIMED_OUT", 2)])
def test_run_follows_the_build_then_summarises_and_exits_by_status(
    status: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local stack whose build writes its log, ends with ``status`` and is archived
    h = harness(([*BUILD_LOG, end(5, status)], status), status=status)
    h.stack.api.stages = [{"name": "build", "status": "succeeded", "duration_ms": 1_200, "exit_code": 0}]
    # WHEN `buildlogs run` runs with no path
    exit_code, out = h.run()
    # THEN it built the default example on a local sandbox and any free port
    assert h.specs == [Path("examples/hello-web")]
    assert h.configs == [{"sandbox": "local", "api_port": 0}]
    assert h.stack.calls == ["enter", "submit hello-web", f"wait {BUILD}", "exit"]
    # AND told where to follow it from another terminal
    err = capsys.readouterr().err
    assert f"follow from another terminal: buildlogs tail {BUILD} --api {STACK_URL}" in err.splitlines()
    assert f"or in a browser: {STACK_URL}builds/{BUILD}/view" in err.splitlines()
    # AND printed the whole log, through the stack's API, once, then the summary with the local archive
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[:5] == [
        "[      build] # --- Building project ---",
        "[      build]   compiling",
        "[      build] ! warning: slow",
        "[      build] ✓ build finished · 1.2s · exit 0",
        f"[      build] # end of log: {status}",
    ]
    summary = [re.split(r"\s{2,}", line.strip()) for line in lines[5:]]
    assert ["result", BUILD, status] in summary
    assert ["lines", "5"] in summary
    assert ["archive", str(ARCHIVE)] in summary
    assert {str(request.url.copy_with(query=None)) for request in h.stack.api.requests} >= {
        f"{STACK_URL}builds/{BUILD}/logs"
    }
    assert exit_code == code


def test_run_passes_the_path_sandbox_and_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2B_API_KEY", "e2b_test")
    h = harness(([end(1, "SUCCEEDED")], "SUCCEEDED"))
    assert h.run(str(tmp_path / "spec.json"), "--sandbox", "e2b", "--port", "8123")[0] == 0
    assert h.specs == [tmp_path / "spec.json"]
    assert h.configs == [{"sandbox": "e2b", "api_port": 8123}]


def test_ctrl_c_cancels_waits_for_the_archive_drains_the_log_and_exits_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a build the user interrupts after its first lines; cancelled, it ends ABORTED
    aborted = [
        entry(5, "BUILD ABORTED", source="system", event="build_failed"),
        end(6, "ABORTED"),
    ]
    h = harness((BUILD_LOG, KeyboardInterrupt()), (aborted, "ABORTED"), status="ABORTED")
    # WHEN `buildlogs run` runs and Ctrl-C arrives while it waits
    code, out = h.run()
    # THEN the build was cancelled and waited for again (the archiver runs on that wait)
    assert h.stack.calls == ["enter", "submit hello-web", f"wait {BUILD}", f"cancel {BUILD}", f"wait {BUILD}", "exit"]
    # AND the log was followed to its end entry: nothing lost, nothing twice
    log_lines = out.split("\n\n")[0].splitlines()
    assert log_lines == [
        "[      build] # --- Building project ---",
        "[      build]   compiling",
        "[      build] ! warning: slow",
        "[      build] ✓ build finished · 1.2s · exit 0",
        "[      build] ✗ BUILD ABORTED",
        "[      build] # end of log: ABORTED",
    ]
    assert f"archive  {ARCHIVE}" in out
    # AND it exits 130 with a notice, never a traceback
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted: cancelling the build (Ctrl-C again to quit at once)" in err
    assert "Traceback" not in err


def test_a_second_ctrl_c_quits_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    h = harness((BUILD_LOG, KeyboardInterrupt()), ([], KeyboardInterrupt()))
    code, _ = h.run()
    err = capsys.readouterr().err
    assert code == 130
    assert h.stack.calls[-1] == "exit"  # the stack was shut down on the way out
    assert err.splitlines()[-1] == "interrupted"
    assert "Traceback" not in err


def test_run_json_prints_only_entries_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    h = harness(([*BUILD_LOG, end(5, "SUCCEEDED")], "SUCCEEDED"))
    code, out = h.run("--json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == h.stack.api.entries
    err = capsys.readouterr().err
    assert f"archive: {ARCHIVE}" in err.splitlines()


def test_a_spec_that_cannot_be_loaded_exits_3_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    h = harness()
    code, out = h.run("broken")
    assert code == 3
    assert out == ""
    assert h.stack.calls == []
    assert capsys.readouterr().err.splitlines() == ["buildlogs: cannot build broken: broken: no buildspec.json"]


def test_without_the_local_stack_run_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> LocalRun:
        raise ModuleNotFoundError("No module named 'moto'")

    monkeypatch.setattr(cli_module, "local_run", missing)
    assert main(["run"], out=io.StringIO()) == 3
    assert "the local run is not available: No module named 'moto'" in capsys.readouterr().err


def test_a_stack_that_cannot_start_exits_3_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    h = harness()
    h.stack.refuse = OSError(98, "Address already in use")
    code, out = h.run("--port", "8080")
    err = capsys.readouterr().err
    assert (code, out) == (3, "")
    assert err.splitlines() == ["buildlogs: cannot start the local stack: OSError: [Errno 98] Address already in use"]


def test_an_e2b_run_without_an_api_key_exits_3_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no E2B API key in the environment
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    h = harness(([end(1, "SUCCEEDED")], "SUCCEEDED"))
    # WHEN `buildlogs run --sandbox e2b` runs
    code, out = h.run("--sandbox", "e2b")
    # THEN it exits 3 at once, saying what is missing: no spec read, no stack started
    assert (code, out) == (3, "")
    assert (h.specs, h.stack.calls) == ([], [])
    assert capsys.readouterr().err.splitlines() == [
        "buildlogs: --sandbox e2b needs an E2B API key: set E2B_API_KEY (or use --sandbox local)"
    ]


def test_run_takes_no_api_option(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN `run` serves its own local API
    h = harness(([end(1, "SUCCEEDED")], "SUCCEEDED"))
    # WHEN --api is given to run itself THEN it is a usage error (3) and nothing starts
    assert h.run("--api", "https://example.com")[0] == 3
    assert "No such option '--api'" in capsys.readouterr().err
    assert h.stack.calls == []
    # AND run's help no longer offers it
    assert main(["run", "--help"], out=io.StringIO()) == 0
    assert "--api" not in capsys.readouterr().out


def test_the_group_s_api_before_run_is_ignored_with_a_notice(capsys: pytest.CaptureFixture[str]) -> None:
    h = harness(([end(1, "SUCCEEDED")], "SUCCEEDED"))
    out = io.StringIO()
    code = main(["--api", "https://example.com", "run"], transport=h.stack.api.transport(), out=out, local=h.local())
    assert code == 0
    err = capsys.readouterr().err
    assert "buildlogs: run ignores --api https://example.com: it serves and follows its own local API" in err
    assert all(str(request.url).startswith(STACK_URL) for request in h.stack.api.requests)


def test_a_build_the_stack_refuses_exits_3_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a stack that rejects the build (its id already has a log)
    h = harness()
    h.stack.reject = ValueError(f"build {BUILD} already has a log")
    # WHEN `buildlogs run` runs
    code, out = h.run()
    # THEN it says why in one line and exits 3, the stack shut down, no traceback
    err = capsys.readouterr().err
    assert (code, out) == (3, "")
    assert err.splitlines() == [f"buildlogs: cannot submit the build: ValueError: build {BUILD} already has a log"]
    assert h.stack.calls == ["enter", "submit hello-web", "exit"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), "ConnectionError: Error 111"),
        (TimeoutError(), "TimeoutError"),
    ],
)
def test_a_wait_that_fails_exits_3_without_a_traceback(
    error: Exception, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a build whose stack fails while run waits for it (Redis gone, a timeout)
    h = harness((BUILD_LOG, error))
    # WHEN `buildlogs run` runs
    code, _ = h.run()
    # THEN it says why in one line and exits 3, the stack shut down, no traceback
    err = capsys.readouterr().err
    assert code == 3
    assert f"buildlogs: waiting for build {BUILD} failed: {reason}" in err
    assert "Traceback" not in err
    assert h.stack.calls == ["enter", "submit hello-web", f"wait {BUILD}", "exit"]

"""Whole builds through the deployed state machine on one machine: stream, API, archive agree."""

import time

import pytest

from buildlogs.client import moto_hook
from buildlogs.client.local_run import LocalStack
from buildlogs.errors import SandboxUnavailable
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime
from buildlogs.pipeline.stages import PIPELINE
from tests.support.local_run import api_records, archive_records, example, stages_started, stream_records, texts


def test_a_build_runs_every_stage_and_stream_api_and_archive_agree(stack: LocalStack, redis_url: str) -> None:
    # GIVEN the default example
    spec = example("hello-web")
    # WHEN it is submitted through the local API and the execution ends
    build_id = stack.submit(spec)
    status = stack.wait(build_id)
    # THEN Step Functions says SUCCEEDED after one task per stage, each routed through the hook
    assert status == "SUCCEEDED"
    assert stack.describe(build_id)["status"] == "SUCCEEDED"
    assert stack.task_calls == len(PIPELINE)
    # AND the stream, the API's pages and the archive on disk hold the same entries, in order
    streamed = stream_records(redis_url, build_id)
    assert api_records(stack.api_url, build_id) == streamed
    assert archive_records(stack, build_id) == streamed
    # AND every stage ran in the registry's order, the server answered, the end entry is last
    assert stages_started(streamed) == [stage.name for stage in PIPELINE]
    assert any(text.startswith("GET /index.html -> 200") for text in texts(streamed, phase="healthcheck"))
    assert (streamed[-1]["event"], streamed[-1]["status"]) == ("end", "SUCCEEDED")
    assert sum(1 for r in streamed if r.get("event") == "end") == 1


def test_a_failing_build_keeps_its_last_stderr_line_everywhere_and_cleans_up(stack: LocalStack, redis_url: str) -> None:
    # GIVEN the example whose build step reports a compiler error on stderr
    build_id = stack.submit(example("broken-build"))
    # WHEN it runs
    status = stack.wait(build_id)
    # THEN the execution FAILED with the build stage's error, and Cleanup ran
    assert status == "FAILED"
    assert stack.describe(build_id)["error"] == "CommandFailed"
    streamed = stream_records(redis_url, build_id)
    assert stages_started(streamed) == ["provision", "scaffold", "install", "build", "cleanup"]
    # AND the diagnostic's last line is in the stream, the API and the archive alike
    stderr = texts(streamed, source="stderr", phase="build")
    assert stderr[0] == "src/app.py:4:28: error: expected ':'"
    assert stderr[-1] == "1 error generated."
    for records in (api_records(stack.api_url, build_id), archive_records(stack, build_id)):
        assert records == streamed
    assert (streamed[-1]["event"], streamed[-1]["status"]) == ("end", "FAILED")
    assert any(r.get("event") == "build_failed" and r["phase"] == "build" for r in streamed)


def test_a_sandbox_that_is_unavailable_once_is_retried_by_the_state_machine(
    stack: LocalStack, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sandbox that cannot be reached the first time a later stage reconnects to it
    reconnects: list[str] = []
    start = LocalSandboxRuntime.start

    async def flaky_start(self: LocalSandboxRuntime) -> None:
        if self._sandbox_id is not None and not reconnects:
            reconnects.append(self._sandbox_id)
            raise SandboxUnavailable("sandbox did not answer")
        await start(self)

    monkeypatch.setattr(LocalSandboxRuntime, "start", flaky_start)
    # WHEN the build runs
    build_id = stack.submit(example("hello-web"))
    status = stack.wait(build_id)
    # THEN the state machine retried Scaffold (its Retry on SandboxUnavailable) and the build succeeded
    assert reconnects
    assert status == "SUCCEEDED"
    streamed = stream_records(redis_url, build_id)
    assert stages_started(streamed).count("scaffold") == 2
    assert any("Sandbox unavailable: sandbox did not answer" in text for text in texts(streamed, phase="scaffold"))
    assert stack.task_calls == len(PIPELINE) + 1


def test_a_cancelled_run_is_archived_as_aborted_with_its_partial_log(stack: LocalStack, redis_url: str) -> None:
    # GIVEN a build whose build step runs for a long time after printing a line
    spec = example("hello-web", build="python3 -u -c \"print('compiling'); import time; time.sleep(120)\"")
    build_id = stack.submit(spec)
    deadline = time.monotonic() + 60
    while "compiling" not in texts(stream_records(redis_url, build_id), phase="build"):
        assert time.monotonic() < deadline, "the build step never printed"
        time.sleep(0.05)
    # WHEN it is cancelled (what Ctrl-C does) and the run ends
    started = time.monotonic()
    stack.cancel(build_id)
    status = stack.wait(build_id)
    # THEN it ended ABORTED at once, and the archive holds the partial log closed by end=ABORTED
    assert status == "ABORTED"
    assert time.monotonic() - started < 30
    archived = archive_records(stack, build_id)
    assert "compiling" in texts(archived, phase="build")
    assert (archived[-1]["event"], archived[-1]["status"]) == ("end", "ABORTED")
    assert archived == stream_records(redis_url, build_id)
    # AND the only failure report is the archiver's BUILD ABORTED: the killed command's own report
    # came after end (the sandbox is reaped once the log is closed) and was discarded, as in AWS
    assert [(r["text"], r["status"]) for r in archived if r.get("event") == "build_failed"] == [
        ("BUILD ABORTED", "ABORTED")
    ]
    assert stack.describe(build_id)["status"] == "ABORTED"


def test_the_hook_is_really_called_and_fails_loudly_when_moto_moves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the pinned moto: the hook is where the local run expects it
    assert moto_hook.check_hook().__name__ == moto_hook.HOOK_MODULE
    # WHEN moto is another version, THEN the local run refuses to start with the reason
    monkeypatch.setattr(moto_hook, "version", lambda _name: "9.9.9")
    with pytest.raises(moto_hook.HookMoved, match=r"moto 9\.9\.9 is installed"):
        moto_hook.check_hook()

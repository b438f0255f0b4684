"""Whole builds through the deployed state machine on one machine: stream, API, archive agree."""

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import boto3
import pytest
import redis as sync_redis
from botocore.exceptions import ClientError

from buildlogs import clients
from buildlogs.client import local_run, moto_hook
from buildlogs.client.local_run import LocalRunConfig, LocalStack, stage_of, status_change_event
from buildlogs.errors import SandboxUnavailable
from buildlogs.keys import logs_key
from buildlogs.pipeline import sandbox
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime
from buildlogs.pipeline.stages import PIPELINE
from tests.support.local_run import (
    FAST_RETRIES,
    api_records,
    archive_records,
    example,
    stages_started,
    stream_records,
    texts,
)

SAMPLE_EVENT = Path(__file__).resolve().parents[1] / "events" / "sfn-execution-status-change.json"
HANGING_BUILD = "python3 -u -c \"print('compiling'); import time; time.sleep(120)\""


def wait_for_line(redis_url: str, build_id: str, text: str, phase: str) -> None:
    deadline = time.monotonic() + 60
    while text not in texts(stream_records(redis_url, build_id), phase=phase):
        assert time.monotonic() < deadline, f"the {phase} step never printed {text!r}"
        time.sleep(0.05)


def count_archiver_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The archiver Lambda's invocations (build ids), by wrapping the handler the stack calls."""
    import functions.archiver.handler as archiver

    calls: list[str] = []
    handler = archiver.lambda_handler

    def counted(event: dict[str, Any], context: Any) -> Any:
        calls.append(event["detail"]["name"])
        return handler(event, context)

    monkeypatch.setattr(archiver, "lambda_handler", counted)
    return calls


def test_a_build_runs_every_stage_and_stream_api_and_archive_agree(stack: LocalStack, redis_url: str) -> None:
    # GIVEN the default example
    spec = example("hello-web")
    # WHEN it is submitted through the local API and the execution ends
    build_id = stack.submit(spec)
    status = stack.wait(build_id)
    # THEN Step Functions says SUCCEEDED after one task per stage, each routed through the hook
    assert status == "SUCCEEDED"
    assert stack.describe(build_id)["status"] == "SUCCEEDED"
    assert stack.task_calls == stack.hook_calls.count == len(PIPELINE)
    assert [stage_of(name) for name in stack.hook_calls.functions] == [stage.name for stage in PIPELINE]
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
    # GIVEN a local sandbox that cannot be reached the first time a later stage reconnects to it
    # (a runtime built with a sandbox_id reconnects; one built without creates)
    reconnects: list[str] = []

    class FlakyOnFirstReconnect(LocalSandboxRuntime):
        def __init__(self, workdir: Any = None, sandbox_id: str | None = None, *, build_id: str | None = None) -> None:
            super().__init__(workdir, sandbox_id, build_id=build_id)
            self.reconnecting_to = sandbox_id

        async def start(self) -> None:
            if self.reconnecting_to is not None and not reconnects:
                reconnects.append(self.reconnecting_to)
                raise SandboxUnavailable("sandbox did not answer")
            await super().start()

    monkeypatch.setattr(sandbox, "LocalSandboxRuntime", FlakyOnFirstReconnect)  # what create_runtime builds
    # WHEN the build runs
    build_id = stack.submit(example("hello-web"))
    status = stack.wait(build_id)
    # THEN the state machine retried Scaffold (its Retry on SandboxUnavailable) and the build succeeded
    assert len(reconnects) == 1
    assert reconnects[0].startswith(f"local-{build_id}-")
    assert status == "SUCCEEDED"
    streamed = stream_records(redis_url, build_id)
    assert stages_started(streamed).count("scaffold") == 2
    assert any("Sandbox unavailable: sandbox did not answer" in text for text in texts(streamed, phase="scaffold"))
    assert stack.task_calls == stack.hook_calls.count == len(PIPELINE) + 1


def test_a_cancelled_run_is_archived_as_aborted_with_its_partial_log(
    stack: LocalStack, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a build whose build step runs for a long time after printing a line
    archiver_calls = count_archiver_calls(monkeypatch)
    build_id = stack.submit(example("hello-web", build=HANGING_BUILD))
    wait_for_line(redis_url, build_id, "compiling", phase="build")
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
    # AND the archiver ran once: wait() after cancel() does not send the status-change event again
    assert archiver_calls == [build_id]


def test_cancel_through_the_local_api_ends_the_build_at_once_as_in_aws(stack: LocalStack, redis_url: str) -> None:
    # GIVEN a build hanging in its build step
    build_id = stack.submit(example("hello-web", build=HANGING_BUILD))
    wait_for_line(redis_url, build_id, "compiling", phase="build")
    # WHEN it is cancelled through the API (what `buildlogs cancel ID --api URL` sends)
    started = time.monotonic()
    request = Request(f"{stack.api_url}builds/{build_id}/cancel", data=b"", method="POST")
    with urlopen(request, timeout=30) as response:
        assert response.status == 202
        assert json.loads(response.read())["build_id"] == build_id
    # THEN the execution ends ABORTED quickly (not when the 120 s command would have returned)
    assert stack.wait(build_id, timeout=30) == "ABORTED"
    assert time.monotonic() - started < 30
    # AND the archive is the partial log closed by BUILD ABORTED and end=ABORTED, nothing after the cancel
    archived = archive_records(stack, build_id)
    assert archived == stream_records(redis_url, build_id)
    assert [(r["text"], r.get("event"), r.get("status")) for r in archived[-2:]] == [
        ("BUILD ABORTED", "build_failed", "ABORTED"),
        (archived[-1]["text"], "end", "ABORTED"),
    ]
    build = [r for r in archived if r["phase"] == "build"]
    assert "compiling" in texts(build)
    assert not any(r.get("event") == "stage_end" for r in build)
    assert [r for r in archived if r.get("event") == "stage_end"][-1]["phase"] == "install"


def test_wait_gives_up_with_a_timeout_error_after_its_limit(stack: LocalStack, redis_url: str) -> None:
    # GIVEN a build hanging in its build step
    build_id = stack.submit(example("hello-web", build=HANGING_BUILD))
    wait_for_line(redis_url, build_id, "compiling", phase="build")
    # WHEN it is waited for with a short limit (given, or the config's) THEN wait() raises TimeoutError
    with pytest.raises(TimeoutError, match=re.escape(f"build {build_id} is still RUNNING after 0.2 s")):
        stack.wait(build_id, timeout=0.2)
    stack.config = replace(stack.config, wait_timeout_s=0.3)
    with pytest.raises(TimeoutError, match=re.escape("after 0.3 s")):
        stack.wait(build_id)
    stack.cancel(build_id)


def test_the_status_change_event_has_the_shape_of_aws_s(stack: LocalStack) -> None:
    # GIVEN an ended execution, as Step Functions describes it
    build_id = stack.submit(example("broken-build"))
    assert stack.wait(build_id) == "FAILED"
    sample = json.loads(SAMPLE_EVENT.read_text())
    # WHEN the stack builds the EventBridge event the archiver gets
    event = status_change_event(stack.describe(build_id))
    # THEN it has exactly the keys of AWS's event, at the top and in detail
    assert sorted(event) == sorted(sample)
    assert sorted(event["detail"]) == sorted(sample["detail"])
    assert (event["detail"]["name"], event["detail"]["status"]) == (build_id, "FAILED")
    assert (event["detail"]["redriveStatus"], event["detail"]["redriveStatusReason"]) == ("REDRIVABLE", None)
    assert event["resources"] == [event["detail"]["executionArn"]]


def test_a_build_id_whose_log_is_already_in_redis_is_refused(stack: LocalStack, redis_url: str, build_id: str) -> None:
    # GIVEN a log already in Redis for a client-chosen id (an earlier run of the same SPEC.json)
    with sync_redis.Redis.from_url(redis_url) as rds:
        rds.xadd(logs_key(build_id), {"ts": "1", "source": "system", "phase": "provision", "text": "old"})
    try:
        # WHEN a build with that id is submitted THEN it is refused, naming the id and the Redis
        with pytest.raises(ValueError, match=re.escape(f"build {build_id} already has a log in Redis at {redis_url}")):
            stack.submit(example("hello-web", build_id=build_id))
        # AND no execution was started
        with pytest.raises(ClientError, match="ExecutionDoesNotExist"):
            stack.describe(build_id)
    finally:
        with sync_redis.Redis.from_url(redis_url) as rds:
            rds.delete(logs_key(build_id))


def test_the_hook_is_really_called_and_fails_loudly_when_moto_moves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the pinned moto: the hook is where the local run expects it
    assert moto_hook.check_hook().__name__ == moto_hook.HOOK_MODULE
    # WHEN moto is another version, THEN the local run refuses to start with the reason
    monkeypatch.setattr(moto_hook, "version", lambda _name: "9.9.9")
    with pytest.raises(moto_hook.HookMoved, match=r"moto 9\.9\.9 is installed"):
        moto_hook.check_hook()


def test_leaving_the_stack_uninstalls_the_embedded_redis(
    tmp_path: Path, definition_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no REDIS_URL: the stack installs its embedded Redis for the functions
    monkeypatch.delenv("REDIS_URL", raising=False)
    for name in ("SOURCES_BUCKET", "LOG_ARCHIVE_BUCKET", "STATE_MACHINE_ARN"):
        monkeypatch.delenv(name, raising=False)
    config = LocalRunConfig(workdir=tmp_path / ".buildlogs", context=FAST_RETRIES, cache_dir=definition_cache)
    with LocalStack(config):
        assert clients.create_redis() is not None
    # WHEN the stack has stopped THEN this process has no Redis without REDIS_URL again
    with pytest.raises(RuntimeError, match="REDIS_URL is not set"):
        clients.create_redis()


def test_an_execution_still_running_at_exit_is_reported_in_the_functions_log(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN interpreter threads that do not end in time when the stack stops
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(local_run, "wait_for_executions", lambda _timeout: False)
    config = LocalRunConfig(workdir=tmp_path / ".buildlogs", context=FAST_RETRIES, cache_dir=definition_cache)
    # WHEN the stack stops
    with LocalStack(config):
        pass
    # THEN the functions' log says so (the terminal shows build logs only)
    log = (tmp_path / ".buildlogs" / "functions.log").read_text()
    assert "an execution was still running when the local stack stopped" in log


def test_with_real_buckets_the_stack_creates_no_bucket(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN both buckets set (real S3), but S3 kept in moto for the test (no network): what the
    # stack would create would show up there
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SOURCES_BUCKET", "someone-elses-sources")
    monkeypatch.setenv("LOG_ARCHIVE_BUCKET", "someone-elses-archive")
    real_config = local_run.moto_config

    def without_passthrough(sources: str, archive: str) -> Any:
        config = real_config(sources, archive)
        assert config["core"]["mock_credentials"] is False  # in real use: the caller's credentials
        return {name: value for name, value in config.items() if name != "core"}

    monkeypatch.setattr(local_run, "moto_config", without_passthrough)
    config = LocalRunConfig(workdir=tmp_path / ".buildlogs", context=FAST_RETRIES, cache_dir=definition_cache)
    # WHEN the stack starts THEN no bucket was created (a real bucket is never created nor replaced)
    with LocalStack(config):
        assert boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"] == []

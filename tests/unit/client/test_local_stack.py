"""LocalStack's start checks, without starting anything: moto's configuration, S3 buckets, Redis."""

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest

from buildlogs import clients
from buildlogs.client.cli import LocalRun, main
from buildlogs.client.local_run import (
    LocalRunConfig,
    LocalStack,
    LocalStackError,
    moto_config,
    redacted_url,
    status_change_event,
)
from buildlogs.client.project import load_spec
from tests.support.sandbox import free_port

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello-web"
SAMPLE_EVENT = Path(__file__).resolve().parents[2] / "events" / "sfn-execution-status-change.json"


def test_without_buckets_moto_runs_the_state_machine_and_keeps_its_own_s3_and_credentials() -> None:
    # GIVEN neither SOURCES_BUCKET nor LOG_ARCHIVE_BUCKET WHEN moto's configuration is built
    config = moto_config("", "")
    # THEN the interpreter runs the ASL, and nothing is passed through (moto's fake credentials are fine)
    assert config == {"stepfunctions": {"execute_state_machine": True}}


def test_with_both_buckets_s3_is_passed_through_with_the_callers_own_credentials() -> None:
    # GIVEN both buckets (real S3) WHEN moto's configuration is built
    config = moto_config("my-sources", "my-archive")
    # THEN S3 goes to AWS, and moto does not replace the credentials with its fake FOOBARKEY
    assert config["stepfunctions"] == {"execute_state_machine": True}
    assert config["core"]["passthrough"] == {"services": ["s3"], "urls": []}
    assert config["core"]["mock_credentials"] is False


@pytest.mark.parametrize(
    ("sources", "archive", "given", "missing"),
    [
        ("my-sources", "", "SOURCES_BUCKET", "LOG_ARCHIVE_BUCKET"),
        ("", "my-archive", "LOG_ARCHIVE_BUCKET", "SOURCES_BUCKET"),
    ],
)
def test_one_bucket_without_the_other_is_refused_with_the_missing_name(
    sources: str, archive: str, given: str, missing: str
) -> None:
    # GIVEN only one of the two buckets WHEN moto's configuration is built THEN it is refused, saying which
    with pytest.raises(LocalStackError, match=f"{given} is set but {missing} is not: set both"):
        moto_config(sources, archive)


def test_a_stack_with_one_bucket_does_not_start_and_leaves_nothing_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SOURCES_BUCKET alone (no REDIS_URL: the embedded Redis would be installed)
    monkeypatch.setenv("SOURCES_BUCKET", "my-real-sources")
    monkeypatch.delenv("LOG_ARCHIVE_BUCKET", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    # WHEN the stack starts THEN it refuses before touching S3, moto or Redis
    with (
        pytest.raises(LocalStackError, match="LOG_ARCHIVE_BUCKET is not"),
        LocalStack(LocalRunConfig(workdir=tmp_path)),
    ):
        pass
    # AND no embedded Redis is left registered for this process
    with pytest.raises(RuntimeError, match="REDIS_URL is not set"):
        clients.create_redis()


def test_an_unreachable_redis_stops_the_stack_with_its_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a REDIS_URL nothing listens on (with a password, which must not be shown)
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    # WHEN the stack starts THEN it says which Redis does not answer
    with pytest.raises(LocalStackError) as refused, LocalStack(LocalRunConfig(workdir=tmp_path)):
        pass
    assert str(refused.value).startswith(f"Redis at redis://:***@127.0.0.1:{port}/0 does not answer: ")
    assert "hunter2" not in str(refused.value)


def test_buildlogs_run_with_an_unreachable_redis_exits_3_with_the_reason_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a REDIS_URL nothing listens on
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    out, err = StringIO(), StringIO()

    def config(**options: object) -> LocalRunConfig:
        return LocalRunConfig(workdir=tmp_path / ".buildlogs", **options)  # type: ignore[arg-type]

    # WHEN `buildlogs run` starts its local stack
    code = main(["run", str(EXAMPLE)], out=out, err=err, local=LocalRun(load_spec, config, LocalStack))
    # THEN it exits 3 through "cannot start the local stack", naming the Redis, without a traceback
    assert code == 3
    assert f"cannot start the local stack: LocalStackError: Redis at redis://127.0.0.1:{port}/0 does not answer" in (
        err.getvalue()
    )
    assert "Traceback" not in err.getvalue() + capfd.readouterr().err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://default:s3cret@cache.example.com:6380/0", "rediss://default:***@cache.example.com:6380/0"),
        ("redis://:s3cret@localhost/1", "redis://:***@localhost/1"),
        ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
)
def test_a_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


@pytest.mark.parametrize(
    ("status", "redrive", "reason"),
    [
        ("SUCCEEDED", "NOT_REDRIVABLE", "Execution is SUCCEEDED and cannot be redriven"),
        ("FAILED", "REDRIVABLE", None),
        ("ABORTED", "REDRIVABLE", None),
    ],
)
def test_the_status_change_event_says_whether_the_execution_can_be_redriven(
    status: str, redrive: str, reason: str | None
) -> None:
    # GIVEN an ended execution as moto describes it (no redrive fields)
    arn = "arn:aws:states:us-east-1:123456789012:execution:buildlogs-local:b-1"
    described = {
        "executionArn": arn,
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:buildlogs-local",
        "name": "b-1",
        "status": status,
        "startDate": datetime(2026, 1, 1, tzinfo=UTC),
        "stopDate": datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        "input": "{}",
    }
    # WHEN the event is built THEN it has AWS's keys, and the redrive fields AWS would set
    event = status_change_event(described)
    sample = json.loads(SAMPLE_EVENT.read_text())
    assert sorted(event) == sorted(sample)
    assert sorted(event["detail"]) == sorted(sample["detail"])
    assert (event["detail"]["redriveStatus"], event["detail"]["redriveStatusReason"]) == (redrive, reason)
    assert (event["detail"]["startDate"], event["detail"]["stopDate"]) == (1767225600000, 1767225660000)

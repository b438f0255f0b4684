"""The sweep against moto Step Functions (executing the ASL), moto S3 and a real Redis."""

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from redis.asyncio import Redis

from buildlogs.archive.sweep import sweep
from buildlogs.keys import archive_key, logs_key, meta_key
from tests.support.archive import BUCKET, REGION, KillRecorder, NoCalls, archived_records, stream_records, write_lines

pytestmark = pytest.mark.redis

ROLE = "arn:aws:iam::123456789012:role/sfn"
# Succeed, Fail, or wait (to be stopped: ABORTED, or left RUNNING), chosen by the input.
DEFINITION = {
    "StartAt": "Route",
    "States": {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.outcome", "StringEquals": "ok", "Next": "Done"},
                {"Variable": "$.outcome", "StringEquals": "fail", "Next": "Broken"},
            ],
            "Default": "Hold",
        },
        "Hold": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Broken": {"Type": "Fail", "Error": "CommandFailed", "Cause": "install exited with code 1"},
    },
}


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    """moto S3 (with the archive bucket) and Step Functions that really runs the ASL."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3, boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
async def build_ids(redis: Redis, build_id: str) -> AsyncIterator[dict[str, str]]:
    ids = {name: f"{build_id}-{name}" for name in ("ok", "fail", "archived", "stopped", "running", "other")}
    yield ids
    for value in ids.values():
        await redis.delete(logs_key(value), meta_key(value))


def wait_for_moto_executions() -> None:
    """Join moto's execution threads (no polling): every started execution has finished."""
    for thread in threading.enumerate():
        if "_execution_logic" in thread.name and thread is not threading.current_thread():
            thread.join(timeout=30)
            assert not thread.is_alive(), f"{thread.name} did not finish"


def wait_until_parked(sfn: Any, execution_arn: str) -> None:
    """Until the execution sits in its Wait state (moto cannot stop an execution whose worker
    thread has not started yet); polls the history with a deadline."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=execution_arn)["events"]
        if any(event["type"] == "WaitStateEntered" for event in events):
            return
        time.sleep(0.005)
    raise AssertionError(f"{execution_arn} never reached its Wait state")


def start(sfn: Any, machine: str, name: str, outcome: str) -> str:
    return str(
        sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps({"outcome": outcome}))["executionArn"]
    )


async def test_sweep_archives_exactly_the_finished_builds_without_an_archive(
    redis: Redis, aws: tuple[Any, Any], build_ids: dict[str, str]
) -> None:
    s3, sfn = aws
    machine = sfn.create_state_machine(name="BuildPipeline", definition=json.dumps(DEFINITION), roleArn=ROLE)[
        "stateMachineArn"
    ]
    other_machine = sfn.create_state_machine(name="Other", definition=json.dumps(DEFINITION), roleArn=ROLE)[
        "stateMachineArn"
    ]
    # GIVEN builds with logs: one succeeded, one failed, one already archived, one stopped,
    # one still running, and one finished run of another state machine
    for value in build_ids.values():
        await write_lines(redis, value, 20)
    await redis.hset(meta_key(build_ids["stopped"]), "sandbox_id", "sbx-stopped")
    s3.put_object(Bucket=BUCKET, Key=archive_key(build_ids["archived"]), Body=b"{}\n")
    start(sfn, machine, build_ids["ok"], "ok")
    start(sfn, machine, build_ids["fail"], "fail")
    start(sfn, machine, build_ids["archived"], "ok")
    stopped = start(sfn, machine, build_ids["stopped"], "hold")
    start(sfn, other_machine, build_ids["other"], "ok")
    wait_until_parked(sfn, stopped)
    sfn.stop_execution(executionArn=stopped)
    wait_for_moto_executions()
    running = start(sfn, machine, build_ids["running"], "hold")
    wait_until_parked(sfn, running)
    assert sfn.describe_execution(executionArn=stopped)["status"] == "ABORTED"
    assert sfn.describe_execution(executionArn=running)["status"] == "RUNNING"
    kill = KillRecorder()

    try:
        # WHEN the sweep runs
        result = await sweep(redis, s3, sfn, BUCKET, machine, 120, kill_sandbox=kill, ttl_seconds=600)
    finally:
        sfn.stop_execution(executionArn=running)

    # THEN exactly the finished builds of our machine that had no archive are archived
    assert sorted(result.archived) == sorted([build_ids["ok"], build_ids["fail"], build_ids["stopped"]])
    assert result.failed == []
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"] if obj["Key"].endswith(".jsonl")}
    assert keys == {archive_key(build_ids[name]) for name in ("ok", "fail", "stopped", "archived")}
    for name, status in (("ok", "SUCCEEDED"), ("fail", "FAILED"), ("stopped", "ABORTED")):
        archived = archived_records(s3, build_ids[name])
        assert archived == await stream_records(redis, build_ids[name])
        assert archived[-1]["event"] == "end"
        assert archived[-1]["status"] == status
    # AND the existing archive is untouched, the running and foreign builds get no end entry
    assert s3.get_object(Bucket=BUCKET, Key=archive_key(build_ids["archived"]))["Body"].read() == b"{}\n"
    for name in ("archived", "running", "other"):
        assert all(r.get("event") != "end" for r in await stream_records(redis, build_ids[name]))
    # AND the aborted run's sandbox was reaped
    assert kill.killed == ["sbx-stopped"]

    # WHEN the running build has been stopped and the sweep runs again
    wait_for_moto_executions()
    again = await sweep(redis, s3, sfn, BUCKET, machine, 120, kill_sandbox=kill, ttl_seconds=600)

    # THEN only that build is archived now; the others keep their single end entry
    assert again.archived == [build_ids["running"]]
    assert again.examined == 5
    for name in ("ok", "fail", "stopped", "running"):
        records = await stream_records(redis, build_ids[name])
        assert [r.get("event") for r in records].count("end") == 1


async def test_sweep_without_bucket_or_machine_does_nothing(redis: Redis) -> None:
    # GIVEN no archive bucket configured / WHEN the sweep runs / THEN it touches no client
    result = await sweep(redis, NoCalls("s3"), NoCalls("sfn"), "", "arn:machine", 120)
    assert (result.examined, result.archived) == (0, [])
    result = await sweep(redis, NoCalls("s3"), NoCalls("sfn"), BUCKET, "", 120)
    assert (result.examined, result.archived) == (0, [])

"""The archiver Lambda handler with the sample events, moto (S3, Step Functions) and a real Redis."""

import asyncio
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis as sync_redis
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from botocore.exceptions import ClientError
from moto import mock_aws
from redis.asyncio import Redis

from buildlogs.archive import service
from buildlogs.clients import s3_client, sfn_client
from buildlogs.keys import archive_key, logs_key
from buildlogs.observability import metrics
from buildlogs.settings import Settings
from functions.archiver import handler
from infra.constants import SWEEP_EVENT
from tests.support.archive import BUCKET, REGION, archived_records, stream_records, write_lines

pytestmark = pytest.mark.redis

EVENTS = Path(__file__).resolve().parents[2] / "events"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:BuildPipeline"


@dataclass
class FakeContext:
    function_name: str = "archiver"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:archiver"
    aws_request_id: str = "req-1"


async def invoke(event: dict[str, Any]) -> Any:
    """Call the Lambda entry point as the runtime does: on a thread with no running event loop."""
    return await asyncio.to_thread(handler.lambda_handler, event, FakeContext())


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def status_event(build_id: str, status: str = "FAILED", machine: str = MACHINE) -> dict[str, Any]:
    """The AWS sample event, for ``build_id`` with ``status``."""
    event = copy.deepcopy(load_event("sfn-execution-status-change.json"))
    execution = machine.replace(":stateMachine:", ":execution:") + f":{build_id}"
    event["resources"] = [execution]
    event["detail"].update(name=build_id, status=status, executionArn=execution, stateMachineArn=machine)
    return event


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[None]:
    """The archiver's environment, moto behind boto3, and a fresh client cache."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LOG_ARCHIVE_BUCKET", BUCKET)
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE)
    monkeypatch.setenv("LOG_STREAM_TTL_SECONDS", "900")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    s3_client.cache_clear()  # a client cached by an earlier test may hold another region
    sfn_client.cache_clear()
    metrics.clear_metrics()  # metrics other tests added outside a handler are not this invocation's
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield
    s3_client.cache_clear()
    sfn_client.cache_clear()


def test_sample_events_have_the_aws_shape() -> None:
    # GIVEN the sample events / THEN they carry the fields AWS documents for their detail-types
    status = load_event("sfn-execution-status-change.json")
    assert (status["source"], status["detail-type"]) == ("aws.states", "Step Functions Execution Status Change")
    assert set(status) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert {"executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate", "input", "output"} <= set(
        status["detail"]
    )
    assert status["resources"] == [status["detail"]["executionArn"]]
    scheduled = load_event("scheduled-sweep.json")
    assert (scheduled["source"], scheduled["detail-type"], scheduled["detail"]) == ("aws.events", "Scheduled Event", {})
    # the stack's EventBridge Scheduler sends its own input: the sample is exactly that input
    assert load_event("scheduled-archive-sweep.json") == SWEEP_EVENT


@pytest.mark.usefixtures("env", "stream_cleanup")
async def test_status_event_archives_the_build_and_flushes_metrics(
    redis: Redis, build_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a build log and the AWS event of its FAILED execution
    await write_lines(redis, build_id, 25)

    # WHEN the Lambda handles the event twice (warm container: a new event loop each time)
    first = await invoke(status_event(build_id))
    second = await invoke(status_event(build_id))

    # THEN the log is archived once with one end entry, and the stream expires
    s3 = boto3.client("s3", region_name=REGION)
    archived = archived_records(s3, build_id)
    assert archived == await stream_records(redis, build_id)
    assert [r.get("event") for r in archived].count("end") == 1
    assert archived[-1]["status"] == "FAILED"
    assert first == second
    assert first == {
        "build_id": build_id,
        "status": "FAILED",
        "archived": True,
        "key": archive_key(build_id),
        "lines": 26,
        "bytes": s3.head_object(Bucket=BUCKET, Key=archive_key(build_id))["ContentLength"],
    }
    assert 0 < await redis.ttl(logs_key(build_id)) <= 900
    # AND the metrics were flushed as EMF
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ArchivedLines", "ArchivedBytes"} <= names
    assert [doc["ArchivedLines"] for doc in emf if "ArchivedLines" in doc] == [[26.0]]


@pytest.mark.usefixtures("env", "stream_cleanup")
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"source": "aws.other"}, "unexpected event"),
        ({"detail-type": "Something Else"}, "unexpected event"),
        ({"machine": MACHINE.replace("BuildPipeline", "Other")}, "other state machine"),
        ({"status": "RUNNING"}, "not a terminal status"),
    ],
)
async def test_foreign_or_non_terminal_events_are_ignored(
    redis: Redis, build_id: str, change: dict[str, str], reason: str
) -> None:
    # GIVEN a running build's log and an event it must not act on
    await write_lines(redis, build_id, 3)
    event = status_event(build_id, change.get("status", "SUCCEEDED"), change.get("machine", MACHINE))
    event.update({k: v for k, v in change.items() if k in ("source", "detail-type")})

    # WHEN the handler receives it
    result = await invoke(event)

    # THEN nothing is written: no end entry, no archive
    assert result == {"ignored": reason}
    assert all(r.get("event") != "end" for r in await stream_records(redis, build_id))
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("name", ["../x", "a/b", "a" * 300])
def test_hostile_name_returns_with_a_warning(name: str) -> None:
    # GIVEN an event whose execution name is not a build id / WHEN handled
    result = handler.lambda_handler(status_event(name, "SUCCEEDED"), FakeContext())

    # THEN the handler returns (permanent: no retry) and archives nothing
    assert result == {"skipped": "invalid build id"}
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)


@pytest.mark.usefixtures("env", "stream_cleanup")
async def test_missing_bucket_returns_with_a_warning(
    redis: Redis, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an archive bucket that does not exist
    monkeypatch.setenv("LOG_ARCHIVE_BUCKET", "no-such-bucket")
    await write_lines(redis, build_id, 3)

    # WHEN the event is handled / THEN it returns (permanent), the stream keeps no TTL
    assert await invoke(status_event(build_id)) == {"skipped": "no such bucket"}
    assert await redis.ttl(logs_key(build_id)) == -1


@pytest.mark.usefixtures("env")
def test_redis_unreachable_raises_so_lambda_retries(build_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Redis that refuses connections
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")

    # WHEN the event is handled / THEN the error propagates (async retries, then the DLQ)
    with pytest.raises(sync_redis.ConnectionError):
        service.handle(status_event(build_id))


@pytest.mark.usefixtures("env", "stream_cleanup")
@pytest.mark.parametrize("sample", ["scheduled-archive-sweep.json", "scheduled-sweep.json"])
async def test_scheduled_event_sweeps_ended_executions(redis: Redis, build_id: str, sample: str) -> None:
    # GIVEN an aborted execution whose status event was lost (moto: a stopped execution)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="BuildPipeline", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    assert machine == MACHINE
    execution = sfn.start_execution(stateMachineArn=machine, name=build_id)["executionArn"]
    sfn.stop_execution(executionArn=execution)
    await write_lines(redis, build_id, 7)

    # WHEN the scheduled sweep event arrives
    result = await invoke(load_event(sample))

    # THEN that build is archived with its ABORTED end
    assert result == {"swept": [build_id], "failed": [], "examined": 1}
    archived = archived_records(boto3.client("s3", region_name=REGION), build_id)
    assert [r["text"] for r in archived[-2:]] == ["BUILD ABORTED", "end of log: ABORTED"]


def direct_settings(redis_url: str, bucket: str = BUCKET) -> Settings:
    """Explicit settings for calling the service directly (the environment is not read)."""
    return Settings(
        redis_url=redis_url, log_archive_bucket=bucket, state_machine_arn=MACHINE, log_stream_ttl_seconds=900
    )


@pytest.mark.usefixtures("env", "stream_cleanup")
async def test_service_archives_with_the_clients_it_is_given(redis: Redis, redis_url: str, build_id: str) -> None:
    # GIVEN a build log, explicit settings and a moto S3 client (no cached client)
    s3 = boto3.client("s3", region_name=REGION)
    await write_lines(redis, build_id, 4)

    # WHEN the service handles the status event (an EventBridgeEvent or the raw dict alike)
    settings = direct_settings(redis_url)
    event = status_event(build_id, "SUCCEEDED")
    first = await service.handle_event(EventBridgeEvent(event), settings=settings, s3=s3)
    second = await service.handle_event(event, settings=settings, s3=s3)

    # THEN the build is archived once, through the given client
    assert first == second
    assert (first["archived"], first["status"], first["lines"]) == (True, "SUCCEEDED", 5)
    assert archived_records(s3, build_id) == await stream_records(redis, build_id)


@pytest.mark.usefixtures("env", "stream_cleanup")
async def test_service_sweep_with_a_failed_build_raises_so_the_schedule_retries(redis_url: str, build_id: str) -> None:
    # GIVEN an aborted execution, and an archive bucket that does not exist
    s3 = boto3.client("s3", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="BuildPipeline", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    sfn.stop_execution(executionArn=sfn.start_execution(stateMachineArn=machine, name=build_id)["executionArn"])

    # WHEN the service sweeps / THEN the build is reported as failed by a raise (not a return)
    with pytest.raises(service.SweepIncomplete, match=build_id):
        await service.sweep_builds(settings=direct_settings(redis_url, "no-such-bucket"), s3=s3, sfn=sfn)


def test_only_a_missing_bucket_is_a_permanent_s3_error() -> None:
    # GIVEN S3 errors / THEN only NoSuchBucket is permanent; anything else is retried
    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")

    assert service.is_permanent_s3_error(client_error("NoSuchBucket"))
    assert not service.is_permanent_s3_error(client_error("SlowDown"))
    assert not service.is_permanent_s3_error(client_error("AccessDenied"))
    assert not service.is_permanent_s3_error(ConnectionError("reset"))

"""Archiver Lambda: a terminal Step Functions status event archives that build's log; a
scheduled event sweeps recently ended executions for builds still missing their archive.

Thin on purpose: parsing and dispatch here, the work in ``buildlogs.archive.archiver`` and
``buildlogs.archive.sweep``. A transient Redis/S3 error raises (async invoke retries, then the DLQ); a
permanent problem (invalid build id, missing bucket) returns with a warning.
"""

import asyncio
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.archive.archiver import KillSandbox, archive_logs
from buildlogs.archive.sweep import sweep
from buildlogs.clients import create_redis
from buildlogs.keys import validate_build_id
from buildlogs.observability import logger, metrics, tracer
from buildlogs.settings import Settings, get_settings
from buildlogs.statuses import TERMINAL

STATUS_CHANGE = "Step Functions Execution Status Change"
STATUS_SOURCE = "aws.states"
# The sweep's trigger: the stack's EventBridge Scheduler input (infra.constants.SWEEP_EVENT), or
# the classic EventBridge scheduled-rule event.
SWEEP_EVENTS = frozenset(
    {
        ("buildlogs.sweep", "Scheduled Archive Sweep"),
        ("aws.events", "Scheduled Event"),
        ("aws.scheduler", "Scheduled Event"),
    }
)
PERMANENT_S3_ERRORS = frozenset({"NoSuchBucket"})

RedisFactory = Callable[[Settings], "Redis | RedisCluster"]


class SweepIncomplete(RuntimeError):
    """Some builds of a sweep could not be archived (the schedule's retry or the next sweep will)."""


@lru_cache(maxsize=4)
def _client(service: str) -> Any:
    """One boto3 client per service and container (boto3 clients are loop-free and reusable)."""
    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 5}))


def handle(
    event: dict[str, Any],
    *,
    s3: Any = None,
    sfn: Any = None,
    settings: Settings | None = None,
    redis_factory: RedisFactory = create_redis,
    kill_sandbox: KillSandbox | None = None,
) -> dict[str, Any]:
    """Dispatch one event: status change → archive that build; scheduled → sweep."""
    settings = settings or get_settings()
    parsed = EventBridgeEvent(event)
    source, detail_type = event.get("source"), event.get("detail-type")
    if detail_type == STATUS_CHANGE and source == STATUS_SOURCE:
        return asyncio.run(_archive_one(parsed, s3, settings, redis_factory, kill_sandbox))
    if (source, detail_type) in SWEEP_EVENTS:
        return asyncio.run(_sweep(s3, sfn, settings, redis_factory, kill_sandbox))
    logger.warning("event ignored: not a status change nor a schedule", extra={"source": source, "type": detail_type})
    return {"ignored": "unexpected event"}


async def _archive_one(
    event: EventBridgeEvent,
    s3: Any,
    settings: Settings,
    redis_factory: RedisFactory,
    kill_sandbox: KillSandbox | None,
) -> dict[str, Any]:
    detail = event.detail or {}
    build_id, status = detail.get("name"), detail.get("status")
    machine = detail.get("stateMachineArn")
    if settings.state_machine_arn and machine != settings.state_machine_arn:
        logger.warning("event of another state machine ignored", extra={"state_machine": str(machine)[:200]})
        return {"ignored": "other state machine"}
    if status not in TERMINAL:
        logger.info("non-terminal status ignored", extra={"status": str(status)[:40]})
        return {"ignored": "not a terminal status"}
    logger.append_keys(build_id=str(build_id)[:80])
    try:
        build_id = validate_build_id(build_id)
    except ValueError as exc:  # permanent: retrying cannot help, so no raise
        logger.warning("event not archived: invalid build id", extra={"error": str(exc)})
        return {"skipped": "invalid build id"}
    bucket = settings.log_archive_bucket
    redis = redis_factory(settings)
    try:
        result = await archive_logs(
            redis,
            s3 if s3 is not None or not bucket else _client("s3"),
            bucket,
            build_id,
            status,
            kill_sandbox=kill_sandbox,
            ttl_seconds=settings.log_stream_ttl_seconds,
        )
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in PERMANENT_S3_ERRORS:
            raise
        logger.warning("event not archived: the archive bucket does not exist", extra={"bucket": bucket})
        return {"skipped": "no such bucket"}
    finally:
        await redis.aclose()
    if result is None:
        return {"build_id": build_id, "status": status, "archived": False}
    return {
        "build_id": build_id,
        "status": result.status or status,
        "archived": True,
        "key": result.key,
        "lines": result.lines,
        "bytes": result.bytes,
    }


async def _sweep(
    s3: Any, sfn: Any, settings: Settings, redis_factory: RedisFactory, kill_sandbox: KillSandbox | None
) -> dict[str, Any]:
    if not settings.log_archive_bucket or not settings.state_machine_arn:
        logger.info("sweep skipped: LOG_ARCHIVE_BUCKET or STATE_MACHINE_ARN is empty")
        return {"swept": [], "failed": []}
    redis = redis_factory(settings)
    try:
        result = await sweep(
            redis,
            s3 if s3 is not None else _client("s3"),
            sfn if sfn is not None else _client("stepfunctions"),
            settings.log_archive_bucket,
            settings.state_machine_arn,
            settings.archive_sweep_lookback_minutes,
            kill_sandbox=kill_sandbox,
            ttl_seconds=settings.log_stream_ttl_seconds,
        )
    finally:
        await redis.aclose()
    if result.failed:
        raise SweepIncomplete(f"{len(result.failed)} builds not archived: {', '.join(result.failed[:20])}")
    return {"swept": result.archived, "failed": result.failed, "examined": result.examined}


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The archiver's entry point (EventBridge rule on terminal statuses, and the sweep schedule)."""
    return handle(event)

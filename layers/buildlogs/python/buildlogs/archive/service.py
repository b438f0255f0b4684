"""What the archiver Lambda does with one EventBridge event: archive one build, or sweep.

A terminal Step Functions status change of our state machine archives that build's log
(:func:`buildlogs.archive.archiver.archive_logs`); a scheduled event sweeps recently ended
executions for builds still missing their archive (:func:`buildlogs.archive.sweep.sweep`).

Errors: a permanent problem (another state machine, a non-terminal status, an invalid build id,
a missing archive bucket) is logged and returned, since retrying cannot help; anything else
raises, so the async invoke's retries and then the DLQ keep it from being lost.

Clients come from :mod:`buildlogs.clients` unless the caller passes its own (tests pass moto's).
A Redis client is made per call: it belongs to the event loop of that ``asyncio.run()``.
"""

import asyncio
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from buildlogs.archive.archiver import KillSandbox, archive_logs
from buildlogs.archive.sweep import sweep
from buildlogs.clients import RedisFactory, create_redis, error_code, s3_client, sfn_client
from buildlogs.keys import validate_build_id
from buildlogs.observability import logger
from buildlogs.settings import Settings, get_settings
from buildlogs.statuses import TERMINAL, ExecutionStatus

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

STATUS_SOURCE = "aws.states"
STATUS_CHANGE = "Step Functions Execution Status Change"
# The sweep's trigger: the stack's EventBridge Scheduler input (infra.constants.SWEEP_EVENT — a
# deployed contract), or the classic EventBridge scheduled-rule event.
SWEEP_EVENTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("buildlogs.sweep", "Scheduled Archive Sweep"),
        ("aws.events", "Scheduled Event"),
        ("aws.scheduler", "Scheduled Event"),
    }
)
# S3 error codes no retry can fix.
PERMANENT_S3_ERRORS = frozenset({"NoSuchBucket"})

Event = EventBridgeEvent | dict[str, Any]


class SweepIncomplete(RuntimeError):
    """Some builds of a sweep could not be archived (the schedule's retry or the next sweep will)."""


def handle(
    event: Event,
    *,
    settings: Settings | None = None,
    redis_factory: RedisFactory = create_redis,
    s3: "S3Client | None" = None,
    sfn: "SFNClient | None" = None,
    kill_sandbox: KillSandbox | None = None,
) -> dict[str, Any]:
    """:func:`handle_event` on a fresh event loop, with ``get_settings()`` unless ``settings``."""
    return asyncio.run(
        handle_event(
            event,
            settings=settings or get_settings(),
            redis_factory=redis_factory,
            s3=s3,
            sfn=sfn,
            kill_sandbox=kill_sandbox,
        )
    )


async def handle_event(
    event: Event,
    *,
    settings: Settings,
    redis_factory: RedisFactory = create_redis,
    s3: "S3Client | None" = None,
    sfn: "SFNClient | None" = None,
    kill_sandbox: KillSandbox | None = None,
) -> dict[str, Any]:
    """Dispatch one event: status change → :func:`archive_build`; scheduled → :func:`sweep_builds`.

    Any other event is logged and ignored (``{"ignored": "unexpected event"}``).
    """
    parsed = event if isinstance(event, EventBridgeEvent) else EventBridgeEvent(event)
    # .get, not the properties: an event without these keys is ignored, not a KeyError.
    source, detail_type = parsed.get("source"), parsed.get("detail-type")
    if (source, detail_type) == (STATUS_SOURCE, STATUS_CHANGE):
        return await archive_build(
            parsed, settings=settings, redis_factory=redis_factory, s3=s3, kill_sandbox=kill_sandbox
        )
    if (source, detail_type) in SWEEP_EVENTS:
        return await sweep_builds(
            settings=settings, redis_factory=redis_factory, s3=s3, sfn=sfn, kill_sandbox=kill_sandbox
        )
    logger.warning("event ignored: not a status change nor a schedule", extra={"source": source, "type": detail_type})
    return {"ignored": "unexpected event"}


async def archive_build(
    event: EventBridgeEvent,
    *,
    settings: Settings,
    redis_factory: RedisFactory = create_redis,
    s3: "S3Client | None" = None,
    kill_sandbox: KillSandbox | None = None,
) -> dict[str, Any]:
    """Archive the build of one status-change event (``detail.name`` = build id).

    Returns ``{"ignored": ...}`` for another state machine's event or a non-terminal status,
    ``{"skipped": ...}`` for an invalid build id or a missing bucket, else the build's result
    (``archived: False`` when ``LOG_ARCHIVE_BUCKET`` is empty).
    """
    detail = event.detail or {}
    machine = detail.get("stateMachineArn")
    if settings.state_machine_arn and machine != settings.state_machine_arn:
        logger.warning("event of another state machine ignored", extra={"state_machine": str(machine)[:200]})
        return {"ignored": "other state machine"}
    raw_status = detail.get("status")
    if raw_status not in TERMINAL:
        logger.info("non-terminal status ignored", extra={"status": str(raw_status)[:40]})
        return {"ignored": "not a terminal status"}
    status = ExecutionStatus(raw_status).value
    name = detail.get("name")
    logger.append_keys(build_id=str(name)[:80])
    try:
        build_id = validate_build_id(name)
    except ValueError as exc:
        logger.warning("event not archived: invalid build id", extra={"error": str(exc)})
        return {"skipped": "invalid build id"}
    bucket = settings.log_archive_bucket
    redis = redis_factory(settings)
    try:
        result = await archive_logs(
            redis,
            s3 if s3 is not None else s3_client(),
            bucket,
            build_id,
            status,
            kill_sandbox=kill_sandbox,
            ttl_seconds=settings.log_stream_ttl_seconds,
        )
    except Exception as exc:
        if not is_permanent_s3_error(exc):
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


async def sweep_builds(
    *,
    settings: Settings,
    redis_factory: RedisFactory = create_redis,
    s3: "S3Client | None" = None,
    sfn: "SFNClient | None" = None,
    kill_sandbox: KillSandbox | None = None,
) -> dict[str, Any]:
    """Archive recently ended builds that have no archive yet: ``{"swept", "failed", "examined"}``.

    Raises :class:`SweepIncomplete` when some builds failed (the others are archived).
    """
    if not settings.log_archive_bucket or not settings.state_machine_arn:
        logger.info("sweep skipped: LOG_ARCHIVE_BUCKET or STATE_MACHINE_ARN is empty")
        return {"swept": [], "failed": []}
    redis = redis_factory(settings)
    try:
        result = await sweep(
            redis,
            s3 if s3 is not None else s3_client(),
            sfn if sfn is not None else sfn_client(),
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


def is_permanent_s3_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an S3 error no retry can fix (the archive bucket does not exist)."""
    return error_code(exc) in PERMANENT_S3_ERRORS


__all__ = [
    "PERMANENT_S3_ERRORS",
    "STATUS_CHANGE",
    "STATUS_SOURCE",
    "SWEEP_EVENTS",
    "Event",
    "SweepIncomplete",
    "archive_build",
    "handle",
    "handle_event",
    "is_permanent_s3_error",
    "sweep_builds",
]

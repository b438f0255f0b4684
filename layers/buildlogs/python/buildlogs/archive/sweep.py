"""The archive sweep: builds whose status event was lost still get archived.

EventBridge delivers Step Functions status events best effort. The sweep (a scheduled run of
the archiver) lists the state machine's executions that ended in the last
``ARCHIVE_SWEEP_LOOKBACK_MINUTES`` and archives every one whose archive object is missing,
through :func:`buildlogs.archive.archiver.archive_logs` — the same idempotent path as the event.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.archive.archiver import KillSandbox, archive_logs, head_archive
from buildlogs.keys import archive_key, validate_build_id
from buildlogs.observability import logger, metrics, tracer
from buildlogs.pipeline.stages import STAGES
from buildlogs.statuses import TERMINAL

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

# ListExecutions sorts by start date, newest first, so paging stops at the first execution that
# started too early to have ended inside the window. A run lasts at most its stages' timeouts;
# three times their sum leaves room for retries and backoff.
MAX_RUN = timedelta(seconds=3 * sum(stage.timeout_seconds for stage in STAGES))
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class FinishedExecution:
    """One execution that ended inside the sweep's window."""

    name: str
    status: str
    stop_date: datetime


@dataclass(slots=True)
class SweepResult:
    """What a sweep found: executions examined, builds archived now, builds that failed."""

    examined: int = 0
    archived: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def list_finished_executions(
    sfn: "SFNClient",
    state_machine_arn: str,
    since: datetime,
    *,
    max_run: timedelta = MAX_RUN,
    page_size: int = PAGE_SIZE,
) -> list[FinishedExecution]:
    """Executions of ``state_machine_arn`` in a terminal status that stopped at or after ``since``.

    One paginated ListExecutions per terminal status; paging stops once executions started
    before ``since - max_run`` (none of the older ones can have ended inside the window).
    """
    found: list[FinishedExecution] = []
    oldest_start = since - max_run
    for status in TERMINAL:
        kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "statusFilter": status, "maxResults": page_size}
        while True:
            page = sfn.list_executions(**kwargs)
            stop = False
            for execution in page.get("executions", ()):
                started = _utc(execution["startDate"])
                if started < oldest_start:
                    stop = True
                    break
                # AWS reports stopDate for every ended execution; without one, the start bounds it.
                stopped = _utc(execution.get("stopDate") or started)
                if stopped >= since:
                    found.append(FinishedExecution(str(execution["name"]), status, stopped))
            token = page.get("nextToken")
            if stop or not token:
                break
            kwargs["nextToken"] = token
    return found


@tracer.capture_method(capture_response=False)
async def sweep(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    sfn: "SFNClient",
    bucket: str,
    state_machine_arn: str,
    lookback_minutes: int,
    *,
    now: datetime | None = None,
    kill_sandbox: KillSandbox | None = None,
    ttl_seconds: int | None = None,
) -> SweepResult:
    """Archive every build that ended in the last ``lookback_minutes`` and has no archive yet.

    A failure of one build is logged and counted (``failed``); the others are still archived.
    Empty ``bucket`` or ``state_machine_arn``: nothing to do (one log line).
    """
    result = SweepResult()
    if not bucket or not state_machine_arn:
        logger.info("sweep skipped: LOG_ARCHIVE_BUCKET or STATE_MACHINE_ARN is empty")
        return result
    since = (now or datetime.now(UTC)) - timedelta(minutes=lookback_minutes)
    executions = await asyncio.to_thread(list_finished_executions, sfn, state_machine_arn, since)
    result.examined = len(executions)
    for execution in executions:
        try:
            build_id = validate_build_id(execution.name)
        except ValueError:
            logger.warning("sweep: execution name is not a build id, skipped", extra={"name": execution.name[:80]})
            continue
        try:
            if await head_archive(s3, bucket, archive_key(build_id)) is not None:
                continue
            await archive_logs(
                redis, s3, bucket, build_id, execution.status, kill_sandbox=kill_sandbox, ttl_seconds=ttl_seconds
            )
        except Exception as exc:
            logger.warning("sweep: archival failed", extra={"build_id": build_id, "error": repr(exc)})
            result.failed.append(build_id)
            continue
        result.archived.append(build_id)
    if result.archived:
        metrics.add_metric(name="SweptBuilds", unit=MetricUnit.Count, value=len(result.archived))
    logger.info(
        "sweep done",
        extra={"examined": result.examined, "archived": len(result.archived), "failed": len(result.failed)},
    )
    return result


def _utc(value: Any) -> datetime:
    """A boto3 timestamp (aware datetime) or epoch seconds as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)

"""The REST API's resolver and routes (Powertools, validation on, OpenAPI generated).

Routes stay thin: the work is in ``buildlogs.api.builds`` (Step Functions, spec store) and
``buildlogs.api.logs`` (stream and archive). Every error leaves as JSON ``{error, message}``
with 400/404/409/413 — never the resolver's default 422 or its default bodies, never a trace.

No ``from __future__ import annotations`` here: the resolver reads the annotations at runtime.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import ReadTimeoutError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from buildlogs.api.builds import (
    BuildConflict,
    BuildNotFound,
    BuildNotRunning,
    Execution,
    InvalidPageToken,
    build_exists,
    cancel_build,
    get_build,
    list_builds,
    submit_build,
)
from buildlogs.api.deps import deps
from buildlogs.api.events import CONTENT_TYPE as SSE_CONTENT_TYPE
from buildlogs.api.events import SSE_RETRY_MS, read_events
from buildlogs.api.iterations import InvalidIteration, IterationRefused, SandboxFacts, sandbox_facts, submit_iteration
from buildlogs.api.logs import LogFilter, read_logs, read_logs_before, search_logs, summarise_log
from buildlogs.api.resolver import ThreadSafeRestResolver
from buildlogs.api.schemas import (
    ArchiveLocation,
    BuildItem,
    BuildList,
    BuildStage,
    BuildStatus,
    Cancelled,
    ErrorBody,
    LogEntryOut,
    LogPageOut,
    SearchPageOut,
    Submitted,
    error_responses,
    responses,
)
from buildlogs.api.search import SEARCH_DEADLINE_SECONDS, InvalidQuery, LogQuery, SearchTimeout
from buildlogs.api.text import CONTENT_TYPE as TEXT_CONTENT_TYPE
from buildlogs.api.text import TextTooLarge, content_disposition, read_text
from buildlogs.archive.archiver import head_archive
from buildlogs.keys import BUILD_ID_PATTERN, archive_key, validate_entry_id
from buildlogs.limits import LAMBDA_PAYLOAD_BYTES, PAGE_BUDGET_BYTES
from buildlogs.observability import logger, metrics
from buildlogs.pipeline.models import BuildSpec
from buildlogs.statuses import RUNNING, ExecutionStatus, build_status
from buildlogs.stream.entries import LogEntry

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

T = TypeVar("T")

# The API Gateway REST API authorises every method with IAM (SigV4): the document says so.
SECURITY_SCHEME = "sigv4"

# Lambda's synchronous invocation payload limit; a BuildSpec's own limits are far below it.
MAX_BODY_BYTES = LAMBDA_PAYLOAD_BYTES

BuildId = Annotated[str, Path(pattern=BUILD_ID_PATTERN, max_length=64, description="the build id")]
# The log routes' shared query parameters (one description each, documented in OpenAPI).
# A page's entries stop at PAGE_BUDGET_BYTES (a Lambda response carries at most 6 MB): fewer than limit.
_BUDGET = f"fewer once the page holds {PAGE_BUDGET_BYTES // (1024 * 1024)} MiB of entries"
PageLimit = Annotated[int, Query(ge=1, le=1000, description=f"at most this many entries (1..1000; {_BUDGET})")]
Wait = Annotated[int, Query(ge=0, le=20, description="seconds to wait for the first entry (long-poll, 0..20)")]
Phase = Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="only entries of this stage (e.g. install)")]
Source = Annotated[Literal["stdout", "stderr", "system"] | None, Query(description="only entries of this source")]

app = ThreadSafeRestResolver(enable_validation=True)


class ApiError(Exception):
    """An error with its HTTP status and machine code, raised by routes."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.field = status, error, message, field


def _error(
    status: int, error: str, message: str, field: str | None = None, reasons: list[str] | None = None
) -> Response[Any]:
    body = ErrorBody(error=error, message=message, field=field, reasons=reasons).model_dump(exclude_none=True)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


# -- routes -------------------------------------------------------------------------------------


@app.post(
    "/builds",
    status_code=202,
    summary="Start a build",
    description="Same build_id and same spec again: the same build (202). Same build_id, other spec: 409. "
    "With iterate_from (an earlier SUCCEEDED build): an iteration build in that build's sandbox; 409 with "
    "error not_succeeded, sandbox_gone or iteration_running, 404 for an unknown build.",
    responses=responses(202, Submitted, 400, 404, 409, 413),
)
def post_build(spec: BuildSpec) -> Submitted:
    _check_body_size()
    settings = deps.get_settings()
    if spec.iterate_from is not None:  # issue 12: reuse the earlier build's live sandbox
        build_id = asyncio.run(_submit_iteration(spec))
        metrics.add_metric(name="IterationsSubmitted", unit=MetricUnit.Count, value=1)
        logger.info("iteration build submitted", extra={"build_id": build_id, "iterate_from": spec.iterate_from})
        return Submitted(build_id=build_id, status_url=_status_url(build_id), logs_url=_logs_url(build_id))
    build_id = submit_build(
        deps.stepfunctions(),
        deps.s3_client(),
        state_machine_arn=settings.state_machine_arn,
        bucket=settings.sources_bucket,
        spec=spec,
    )
    metrics.add_metric(name="BuildsSubmitted", unit=MetricUnit.Count, value=1)
    logger.info("build submitted", extra={"build_id": build_id})
    return Submitted(build_id=build_id, status_url=_status_url(build_id), logs_url=_logs_url(build_id))


@app.get("/builds", summary="Recent builds, newest first", responses=responses(200, BuildList, 400))
def get_builds(
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
    status: Annotated[
        ExecutionStatus | None,
        Query(description="only builds in this status"),
    ] = None,
    next_token: Annotated[str | None, Query(alias="next", max_length=4096, description="from the last page")] = None,
) -> BuildList:
    settings = deps.get_settings()
    try:
        builds, token = list_builds(
            deps.stepfunctions(), settings.state_machine_arn, limit=limit, status=status, token=next_token
        )
    except InvalidPageToken as exc:
        raise ApiError(400, "invalid_request", str(exc), "next") from None
    items = [
        BuildItem(
            build_id=build.build_id,
            status=ExecutionStatus(build.status),
            started_at=_iso(build.started_at),
            stopped_at=_iso(build.stopped_at),
            status_url=_status_url(build.build_id),
            logs_url=_logs_url(build.build_id),
        )
        for build in builds
    ]
    return BuildList(builds=items, next=token)


@app.get(
    "/builds/<build_id>",
    summary="A build's status, stages, preview URL and archive",
    responses=responses(200, BuildStatus, 400, 404, 503),
)
def get_build_status(build_id: BuildId) -> BuildStatus:
    settings = deps.get_settings()
    execution = _execution(build_id)
    finished = execution.status not in RUNNING
    summary, archived = asyncio.run(_log_facts(build_id, finished))
    sandbox = asyncio.run(_sandbox_facts(build_id, execution))
    preview_url = (execution.output or {}).get("preview_url") or summary.preview_url
    archive = None
    if archived is not None:
        bucket = settings.log_archive_bucket
        archive = ArchiveLocation(
            bucket=bucket,
            key=archived.key,
            uri=f"s3://{bucket}/{archived.key}",
            lines=archived.lines,
            bytes=archived.bytes,
        )
    return BuildStatus(
        build_id=build_id,
        status=build_status(execution.status),
        started_at=_iso(execution.started_at),
        stopped_at=_iso(execution.stopped_at),
        error=execution.error,
        stages=[
            BuildStage(
                name=stage.name,
                status=stage.status,
                started_at=_iso_ms(stage.started_ms),
                duration_ms=stage.duration_ms,
                exit_code=stage.exit_code,
            )
            for stage in summary.stages
        ],
        preview_url=str(preview_url) if preview_url else None,
        archive=archive,
        logs_url=_logs_url(build_id),
        iterate_from=sandbox.iterate_from,
        sandbox_id=sandbox.sandbox_id,
        sandbox_expires_at=sandbox.sandbox_expires_at,
    )


@app.get(
    "/builds/<build_id>/logs",
    summary="A page of a build's log: forwards (long-poll with wait) or backwards (tail, before)",
    description="Forwards: pass `next` as `after` to continue; entries are never skipped nor repeated. "
    "Backwards: `tail=N` is the last N entries, `before=<id>` the entries just before it (oldest first); "
    "pass `prev` as `before` to continue backwards and `next` as `after` to follow the log from there. "
    "Served from the S3 archive once the live stream expired, with the same entry ids and the same pages. "
    f"A page stops before the entry that would take it past {PAGE_BUDGET_BYTES // (1024 * 1024)} MiB "
    "(long lines): it then holds fewer than `limit` entries, and `next`/`prev` continue from there.",
    responses=responses(200, LogPageOut, 400, 404, 503),
)
def get_build_logs(
    build_id: BuildId,
    after: Annotated[
        str | None, Query(max_length=64, description="entry id: the entries strictly after it (forwards)")
    ] = None,
    before: Annotated[
        str | None,
        Query(max_length=64, description="entry id: the entries just before it, oldest first (backwards)"),
    ] = None,
    tail: Annotated[
        int | None,
        Query(
            ge=1,
            le=1000,
            description=f"the last N entries of the log (backwards from its end; N is the limit; {_BUDGET})",
        ),
    ] = None,
    limit: PageLimit = 100,
    wait: Wait = 0,
    phase: Phase = None,
    source: Source = None,
) -> LogPageOut:
    log_filter = LogFilter(phase=phase, source=source)
    if before is not None or tail is not None:
        if after is not None:
            raise ApiError(400, "invalid_request", "after reads forwards: it cannot go with before or tail", "after")
        if before is not None and tail is not None:
            raise ApiError(400, "invalid_request", "tail is the log's end: use before with limit instead", "tail")
        if before is not None:
            _cursor(before, "before")
        page = _run_logs(
            build_id,
            lambda redis, s3, bucket, exists: read_logs_before(
                redis,
                s3,
                bucket,
                build_id,
                build_exists=exists,
                before=before,
                limit=tail or limit,
                log_filter=log_filter,
            ),
        )
    else:
        cursor = _cursor(after or "0-0", "after")
        page = _run_logs(
            build_id,
            lambda redis, s3, bucket, exists: read_logs(
                redis,
                s3,
                bucket,
                build_id,
                build_exists=exists,
                after=cursor,
                limit=limit,
                wait_ms=wait * 1000,
                log_filter=log_filter,
            ),
        )
    return LogPageOut(
        entries=[_entry_out(entry) for entry in page.entries], next=page.next, done=page.done, prev=page.prev
    )


@app.get(
    "/builds/<build_id>/logs/search",
    summary="Search a build's whole log: matching entries and the exact match count",
    description="Plain queries match a case-insensitive substring of an entry's text; `regex=true` takes an "
    "RE2 pattern (linear time, case-insensitive; a pattern too complex to scan fast is a 400). `total` counts "
    "the matches in the whole log (every stage, with the phase/source filters applied), whatever `after`; "
    "`matches` are the next `limit` ones after `after`, oldest first. Pass `next` as `after` for the following "
    f"matches (a page stops before the match that would take it past {PAGE_BUDGET_BYTES // (1024 * 1024)} MiB: "
    "`next` and `done` continue from there). Live from Redis, archived from S3. A scan is stopped after "
    f"{SEARCH_DEADLINE_SECONDS:g} s: 503 `search_timeout` (narrow the query).",
    responses=responses(200, SearchPageOut, 400, 404, 503),
)
def get_build_log_search(
    build_id: BuildId,
    q: Annotated[str, Query(description="the text to find (1..256 characters), or an RE2 pattern with regex=true")],
    regex: Annotated[bool, Query(description="q is an RE2 regular expression")] = False,
    after: Annotated[
        str | None, Query(max_length=64, description="entry id: only matches strictly after it (from a page's next)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description=f"at most this many matches (1..1000; {_BUDGET})")] = 100,
    phase: Phase = None,
    source: Source = None,
) -> SearchPageOut:
    try:
        query = LogQuery.parse(q, regex=regex)
    except InvalidQuery as exc:
        raise ApiError(400, "invalid_query", str(exc), "q") from None
    cursor = _cursor(after or "0-0", "after")
    log_filter = LogFilter(phase=phase, source=source)
    try:
        page = _run_logs(
            build_id,
            lambda redis, s3, bucket, exists: search_logs(
                redis,
                s3,
                bucket,
                build_id,
                build_exists=exists,
                query=query,
                after=cursor,
                limit=limit,
                log_filter=log_filter,
            ),
        )
    except SearchTimeout as exc:
        logger.warning("search stopped at its deadline", extra={"build_id": build_id, "regex": regex})
        raise ApiError(503, "search_timeout", str(exc), "q") from None
    return SearchPageOut(
        matches=[_entry_out(entry) for entry in page.matches], total=page.total, next=page.next, done=page.done
    )


@app.get(
    "/builds/<build_id>/logs.txt",
    summary="A build's whole log as plain text (a download)",
    description="Each entry's text and a newline, in order, system lines included; ANSI escape sequences "
    "removed unless `ansi=keep`. Live: assembled from the stream (413 when over ~5 MiB: page it with /logs). "
    "Archived: the archive's text object, inline when small, else a 302 to a presigned S3 URL (5 minutes).",
    responses={
        200: {"description": "the log as text", "content": {TEXT_CONTENT_TYPE: {"schema": {"type": "string"}}}},
        302: {"description": "a large archived log: Location is a presigned S3 URL of its text"},
        **error_responses(400, 404, 413, 503),
    },
)
def get_build_log_text(
    build_id: BuildId,
    ansi: Annotated[
        Literal["strip", "keep"], Query(description="strip: remove terminal escape sequences; keep: as printed")
    ] = "strip",
) -> Response[str]:
    try:
        text = _run_logs(
            build_id,
            lambda redis, s3, bucket, exists: read_text(
                redis, s3, bucket, build_id, build_exists=exists, ansi=ansi == "keep"
            ),
        )
    except TextTooLarge as exc:
        raise ApiError(413, "log_too_large", str(exc)) from None
    headers = {"Content-Disposition": content_disposition(build_id)}
    if text.location is not None:
        return Response(status_code=302, headers={**headers, "Location": text.location}, body="")
    return Response(status_code=200, content_type=TEXT_CONTENT_TYPE, body=text.body, headers=headers)


@app.get(
    "/builds/<build_id>/events",
    summary="A build's log as Server-Sent Events (EventSource), one page per response",
    description="Each response is buffered (as under API Gateway): a `: heartbeat` comment (it arrives "
    "with the rest of the body, so it cannot keep an idle proxy open — `wait` keeps each response short; "
    "it keeps the framing of a streaming SSE server, and clients ignore it), "
    f"`retry: {SSE_RETRY_MS}`, then one event per entry (`id:` = entry id, `data:` = the entry's JSON, "
    "as in /logs; the `end` entry as `event: end` with its status), after at most `wait` seconds. "
    "The client reconnects with `Last-Event-ID` and resumes strictly after it: no entry is skipped "
    "or repeated. With filters, a bare `id:` block moves the cursor past entries not kept. "
    "204 once `Last-Event-ID` is at or after the end of the log (EventSource stops).",
    responses={
        200: {
            "description": "one page of events",
            "content": {SSE_CONTENT_TYPE: {"schema": {"type": "string"}}},
        },
        204: {"description": "the log has ended at or before Last-Event-ID: nothing more will come"},
        **error_responses(400, 404, 503),
    },
)
def get_build_events(
    build_id: BuildId,
    after: Annotated[
        str | None,
        Query(max_length=64, description="entry id: start strictly after it (Last-Event-ID wins over it)"),
    ] = None,
    tail: Annotated[
        int | None,
        Query(
            ge=1,
            le=1000,
            description=f"without after or Last-Event-ID: start with the log's last N entries ({_BUDGET})",
        ),
    ] = None,
    wait: Annotated[
        int, Query(ge=0, le=20, description="seconds to wait for a new entry before the response ends (0..20)")
    ] = 20,
    limit: Annotated[
        int, Query(ge=1, le=1000, description=f"at most this many events per response (1..1000; {_BUDGET})")
    ] = 1000,
    phase: Phase = None,
    source: Source = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="sent by EventSource on reconnect: the id of the last event it received",
        ),
    ] = None,
) -> Response[str]:
    resume = last_event_id.strip() if last_event_id else None
    if resume:
        _cursor(resume, "Last-Event-ID")
    else:
        if after is not None and tail is not None:
            raise ApiError(400, "invalid_request", "after and tail exclude each other", "after")
        resume = _cursor(after, "after") if after is not None else None
    log_filter = LogFilter(phase=phase, source=source)
    body = _run_logs(
        build_id,
        lambda redis, s3, bucket, exists: read_events(
            redis,
            s3,
            bucket,
            build_id,
            build_exists=exists,
            after=resume,
            tail=None if resume else tail,
            limit=limit,
            wait_ms=wait * 1000,
            log_filter=log_filter,
        ),
    )
    if body is None:
        return Response(status_code=204, content_type=SSE_CONTENT_TYPE, body="")
    return Response(
        status_code=200,
        content_type=SSE_CONTENT_TYPE,
        body=body,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.post(
    "/builds/<build_id>/cancel",
    status_code=202,
    summary="Cancel a running build (StopExecution)",
    responses=responses(202, Cancelled, 400, 404, 409),
)
def post_cancel(build_id: BuildId) -> Cancelled:
    settings = deps.get_settings()
    cancel_build(
        deps.stepfunctions(),
        deps.s3_client(),
        state_machine_arn=settings.state_machine_arn,
        bucket=settings.sources_bucket,
        build_id=build_id,
    )
    metrics.add_metric(name="BuildsCancelled", unit=MetricUnit.Count, value=1)
    logger.info("build cancelled", extra={"build_id": build_id})
    return Cancelled(build_id=build_id, status_url=_status_url(build_id))


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())


def openapi_json() -> str:
    """The generated OpenAPI document of this API, without the resolver's 422 (we answer 400).

    Every operation requires the ``sigv4`` scheme (API Gateway's IAM auth); Powertools' own
    validation schemas are dropped with the 422s, so no ``$ref`` is left dangling.
    """
    document = json.loads(
        app.get_openapi_json_schema(
            title="buildlogs",
            version="1.0.0",
            description="Start builds, follow their logs live, see their status, cancel them.",
        )
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            operation["security"] = [{SECURITY_SCHEME: []}]
    components = document.setdefault("components", {})
    schemas = components.get("schemas", {})
    # The resolver's own validation bodies: we answer ErrorBody instead, and nothing refers to them.
    for name in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "AWS IAM: requests signed with Signature Version 4 for execute-api",
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }
    return json.dumps(document)


# -- helpers ------------------------------------------------------------------------------------


LogRead = Callable[["Redis | RedisCluster", "S3Client", str, Callable[[], bool]], Awaitable[T]]


def _run_logs(build_id: str, read: "LogRead[T]") -> T:
    """Run one log read on its own event loop with a fresh Redis client: unknown build → 404.

    ``read`` gets the Redis and S3 clients, the archive bucket and the ``build_exists`` check
    (a Step Functions/spec lookup, only asked when neither the stream nor the archive holds the log).
    """
    settings = deps.get_settings()
    sfn, s3 = deps.stepfunctions(), deps.s3_client()

    def exists() -> bool:
        return build_exists(
            sfn, s3, state_machine_arn=settings.state_machine_arn, bucket=settings.sources_bucket, build_id=build_id
        )

    async def run() -> T:
        async with deps.redis() as redis:
            return await read(redis, s3, settings.log_archive_bucket, exists)

    try:
        return asyncio.run(run())
    except LookupError:
        raise ApiError(404, "not_found", f"no build {build_id}") from None


def _cursor(value: str, field: str) -> str:
    """``value`` if it is an entry id, else a 400 naming ``field``."""
    try:
        return validate_entry_id(value)
    except ValueError:
        raise ApiError(400, "invalid_cursor", f"{field} must be an entry id like 1700000000000-0", field) from None


def _entry_out(entry: LogEntry) -> LogEntryOut:
    return LogEntryOut.model_validate(entry.model_dump(exclude_none=True))


def _execution(build_id: str) -> Execution:
    settings = deps.get_settings()
    return get_build(
        deps.stepfunctions(),
        deps.s3_client(),
        state_machine_arn=settings.state_machine_arn,
        bucket=settings.sources_bucket,
        build_id=build_id,
    )


async def _log_facts(build_id: str, finished: bool) -> tuple[Any, Any]:
    """The log's stage summary and the archive object (``None`` until archived)."""
    settings = deps.get_settings()
    bucket, s3 = settings.log_archive_bucket, deps.s3_client()
    async with deps.redis() as redis:
        summary = await summarise_log(redis, s3, bucket, build_id, finished=finished)
    archived = await head_archive(s3, bucket, archive_key(build_id)) if bucket else None
    return summary, archived


async def _submit_iteration(spec: BuildSpec) -> str:
    settings = deps.get_settings()
    async with deps.redis() as redis:
        return await submit_iteration(
            redis,
            deps.stepfunctions(),
            deps.s3_client(),
            state_machine_arn=settings.state_machine_arn,
            bucket=settings.sources_bucket,
            request=spec,
            lease_seconds=settings.execution_timeout_seconds,
        )


async def _sandbox_facts(build_id: str, execution: Execution) -> SandboxFacts:
    async with deps.redis() as redis:
        return await sandbox_facts(redis, build_id, execution.input, execution.output)


def _check_body_size() -> None:
    body = app.current_event.body or ""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes")


def _status_url(build_id: str) -> str:
    return f"/builds/{build_id}"


def _logs_url(build_id: str) -> str:
    return f"/builds/{build_id}/logs"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _iso_ms(value: int | None) -> str | None:
    return datetime.fromtimestamp(value / 1000, UTC).isoformat() if value is not None else None


# -- errors: always {error, message} ------------------------------------------------------------


def _invalid_request(exc: RequestValidationError) -> Response[Any]:
    body = app.current_event.body or ""
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes")
    reasons: list[str] = []
    fields: list[str | None] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        reason = str(error.get("msg") or "invalid value")
        if error.get("type") == "json_invalid":
            field, reason = None, "the body is not valid JSON"
        reasons.append(f"{field}: {reason}" if field else reason)
        fields.append(field)
    if not reasons:
        reasons, fields = ["invalid value"], [None]
    message = reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
    return _error(400, "invalid_request", message, fields[0], reasons if len(reasons) > 1 else None)


def _undecodable_body(_exc: UnicodeDecodeError) -> Response[Any]:
    """A base64 body (binary media type) that is not UTF-8: Powertools fails decoding it."""
    return _error(400, "invalid_request", "the body is not valid UTF-8 JSON")


def _unsupported_type(_exc: RequestUnsupportedContentType) -> Response[Any]:
    return _error(400, "invalid_request", "the body must be application/json")


def _api_error(exc: ApiError) -> Response[Any]:
    return _error(exc.status, exc.error, exc.message, exc.field)


def _not_found(exc: BuildNotFound) -> Response[Any]:
    return _error(404, "not_found", f"no build {exc.args[0]}")


def _no_route(_exc: NotFoundError) -> Response[Any]:
    return _error(404, "not_found", "no such route")


def _conflict(exc: Exception) -> Response[Any]:
    return _error(409, "conflict", str(exc))


def _iteration_refused(exc: IterationRefused) -> Response[Any]:
    return _error(409, exc.reason, exc.message, "iterate_from")


def _invalid_iteration(exc: InvalidIteration) -> Response[Any]:
    return _error(400, "invalid_request", str(exc))


def _service_error(exc: ServiceError) -> Response[Any]:
    return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"), str(exc.msg))


def _unavailable(exc: Exception) -> Response[Any]:
    """Redis (or AWS) cannot be reached: a transient 503 the client retries, never a 500."""
    logger.warning("dependency unavailable", extra={"error_type": type(exc).__name__, "error": str(exc)[:200]})
    response = _error(503, "unavailable", "the log store or AWS is unavailable; retry shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _internal(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return _error(500, "internal_error", "internal error; the request id is in the response headers")


# Transient: Redis or AWS unreachable or too slow (botocore's retries already ran).
UNAVAILABLE: list[type[Exception]] = [
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    BotoConnectionError,
    ReadTimeoutError,
]
RETRY_AFTER_SECONDS = 2

# Registered by call, not decorator (the decorator is untyped); the most specific class wins.
_HANDLERS: tuple[tuple[Any, Any], ...] = (
    (RequestValidationError, _invalid_request),
    (RequestUnsupportedContentType, _unsupported_type),
    (UnicodeDecodeError, _undecodable_body),
    (ApiError, _api_error),
    (BuildNotFound, _not_found),
    (NotFoundError, _no_route),
    ([BuildConflict, BuildNotRunning], _conflict),
    (IterationRefused, _iteration_refused),
    (InvalidIteration, _invalid_iteration),
    (ServiceError, _service_error),
    (UNAVAILABLE, _unavailable),
    (Exception, _internal),
)
for _exc_class, _handler in _HANDLERS:
    app.exception_handler(_exc_class)(_handler)

__all__ = ["MAX_BODY_BYTES", "ApiError", "app", "openapi_json"]

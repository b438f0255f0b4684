"""Response bodies of the REST API (pydantic, so the generated OpenAPI document describes them).

Never a BuildSpec's ``env`` here: its values are secrets.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field

from buildlogs.limits import PAGE_BUDGET_BYTES
from buildlogs.statuses import BuildStatusValue, ExecutionStatus
from buildlogs.stream.summary import StageStatus


class ErrorBody(BaseModel):
    """Every error response: a stable machine code and a human message."""

    error: str = Field(description="machine-readable code, e.g. invalid_request, not_found, conflict")
    message: str
    field: str | None = Field(default=None, description="the offending field of a 400, when known")
    reasons: list[str] | None = Field(default=None, description="a 400's every reason, when there are several")


class Submitted(BaseModel):
    """202 of POST /builds: where to follow the build (paths relative to the API root)."""

    build_id: str
    status_url: str
    logs_url: str


class Cancelled(BaseModel):
    """202 of POST /builds/{id}/cancel."""

    build_id: str
    status: Literal["ABORTING"] = "ABORTING"
    status_url: str


class BuildItem(BaseModel):
    """One run in GET /builds."""

    build_id: str
    status: ExecutionStatus
    started_at: str | None = None
    stopped_at: str | None = None
    status_url: str
    logs_url: str


class BuildList(BaseModel):
    """GET /builds: newest first; ``next`` is an opaque token for the following page."""

    builds: list[BuildItem]
    next: str | None = None


class BuildStage(BaseModel):
    """One stage of a build as its log tells it."""

    name: str
    status: StageStatus = Field(description="interrupted: still running when the build ended")
    started_at: str | None = None
    duration_ms: int | None = None
    exit_code: int | None = None


class ArchiveLocation(BaseModel):
    """The build's archived NDJSON log."""

    bucket: str
    key: str
    uri: str
    lines: int
    bytes: int


class BuildStatus(BaseModel):
    """GET /builds/{id}."""

    build_id: str
    status: BuildStatusValue = Field(description="PENDING (spec stored, no execution yet) or a Step Functions status")
    started_at: str | None = None
    stopped_at: str | None = None
    error: str | None = Field(default=None, description="the failing stage's error name, if any")
    stages: list[BuildStage] = Field(default_factory=list)
    preview_url: str | None = Field(
        default=None,
        description="once started: the execution output's preview_url, else the start stage's log entry",
    )
    archive: ArchiveLocation | None = Field(default=None, description="set once the log is archived")
    logs_url: str
    iterate_from: str | None = Field(default=None, description="an iteration build: the build it iterates from")
    sandbox_id: str | None = Field(default=None, description="the build's sandbox, once provisioned")
    sandbox_expires_at: str | None = Field(
        default=None, description="until when the sandbox is kept (extended by each iteration); null: not kept"
    )


class LogEntryOut(BaseModel):
    """One log entry; system entries carry ``event`` and its fields (duration_ms, status, …)."""

    model_config = {"extra": "allow"}

    id: str
    ts: int
    source: Literal["stdout", "stderr", "system"]
    text: str
    phase: str
    event: str | None = None


class LogPageOut(BaseModel):
    """GET /builds/{id}/logs: pass ``next`` as ``after`` to continue; ``done`` once the log ended."""

    entries: list[LogEntryOut] = Field(
        description=f"oldest first; at most limit, fewer once they reach {PAGE_BUDGET_BYTES // (1024 * 1024)} MiB"
    )
    next: str = Field(description="pass as `after` to read on forwards (after a backward read too)")
    done: bool = Field(description="the log has ended and `next` is its `end` entry")
    prev: str | None = Field(
        default=None,
        description="backward reads (tail, before): pass as `before` for the entries before these; "
        "null when the log's first entry was reached (and on forward reads)",
    )


ERROR_DESCRIPTIONS = {
    400: "invalid request",
    404: "unknown build",
    409: "conflict",
    413: "too large: the request body, or a live log as text",
    500: "internal error",
    503: "Redis or AWS unavailable: retry after Retry-After seconds; "
    "or (search) search_timeout: the scan ran past its deadline, narrow the query",
}


class SearchPageOut(BaseModel):
    """GET /builds/{id}/logs/search: matches after the cursor and the whole log's match count."""

    matches: list[LogEntryOut] = Field(
        description="up to limit matching entries strictly after `after`, oldest first "
        f"(fewer once they reach {PAGE_BUDGET_BYTES // (1024 * 1024)} MiB)"
    )
    total: int = Field(description="the exact number of matching entries in the whole log (filters applied)")
    next: str = Field(description="pass as `after` for the following matches: the last match returned (or `after`)")
    done: bool = Field(description="no match exists after `next` (for now, if the log is still running)")


def responses(status: int, model: type[BaseModel], *errors: int) -> dict[int, Any]:
    """OpenAPI ``responses`` of a route: its success (``status``, ``model``) and its error codes."""
    documented: dict[int, Any] = {status: {"description": "success", "content": {"application/json": {"model": model}}}}
    documented.update(error_responses(*errors))
    return documented


def error_responses(*errors: int) -> dict[int, Any]:
    """OpenAPI ``responses`` for error codes (and 500): each an :class:`ErrorBody`."""
    return {
        code: {"description": ERROR_DESCRIPTIONS[code], "content": {"application/json": {"model": ErrorBody}}}
        for code in (*errors, 500)
    }

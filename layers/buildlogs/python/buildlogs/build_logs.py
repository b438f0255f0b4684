"""A build's log for API readers: live from its Redis stream, from the S3 archive once it expired.

Both sources carry the same entry ids, so one cursor works across the switch. Filters
(``phase``, ``source``) never stall a reader: ``next`` advances past the entries they reject.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.archive_reader import ArchiveMissing, EntryFilter, iter_archive, read_archive_page
from buildlogs.keys import logs_key, validate_build_id, validate_entry_id
from buildlogs.models import LogEntry, entry_record
from buildlogs.observability import tracer
from buildlogs.reader import MAX_LIMIT, MAX_WAIT_MS, LogPage, LogReader

# With a filter and no wait, at most this many pages are scanned per call (next still advances).
MAX_FILTERED_PAGES = 10


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Keep only entries of one phase and/or one source (``None``: any)."""

    phase: str | None = None
    source: str | None = None

    @property
    def active(self) -> bool:
        return self.phase is not None or self.source is not None

    def __call__(self, record: dict[str, Any]) -> bool:
        return (self.phase is None or record.get("phase") == self.phase) and (
            self.source is None or record.get("source") == self.source
        )

    def keeps(self, entry: LogEntry) -> bool:
        return self({"phase": entry.phase, "source": entry.source})


@tracer.capture_method(capture_response=False)
async def read_logs(
    redis: "Redis | RedisCluster",
    s3: Any,
    bucket: str,
    build_id: str,
    *,
    build_exists: Callable[[], bool],
    after: str = "0-0",
    limit: int = 100,
    wait_ms: int = 0,
    log_filter: LogFilter | None = None,
) -> LogPage:
    """One page of ``build_id``'s log after ``after``: live, archived, or ``LookupError`` if unknown.

    The stream is preferred while it exists; once it expired the archive serves the same ids.
    ``build_exists`` (a Step Functions lookup) is only asked when neither holds the log, so a
    build that has not written its first line yet is long-polled rather than reported missing.
    """
    validate_build_id(build_id)
    validate_entry_id(after)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= wait_ms <= MAX_WAIT_MS:
        raise ValueError(f"wait must be between 0 and {MAX_WAIT_MS // 1000} seconds")
    log_filter = log_filter or LogFilter()
    if not await redis.exists(logs_key(build_id)):
        page = await _archived(s3, bucket, build_id, after, limit, log_filter)
        if page is not None:
            return page
        if not await asyncio.to_thread(build_exists):
            raise LookupError(build_id)
    return await _live(LogReader(redis), build_id, after, limit, wait_ms, log_filter)


async def _archived(
    s3: Any, bucket: str, build_id: str, after: str, limit: int, log_filter: LogFilter
) -> LogPage | None:
    if not bucket:
        return None
    keep: EntryFilter | None = log_filter if log_filter.active else None
    try:
        return await asyncio.to_thread(read_archive_page, s3, bucket, build_id, after, limit, keep)
    except ArchiveMissing:
        return None


async def _live(
    reader: LogReader, build_id: str, after: str, limit: int, wait_ms: int, log_filter: LogFilter
) -> LogPage:
    """Read pages until one holds a kept entry, the log ends, or the wait (or page budget) runs out."""
    deadline = time.monotonic() + wait_ms / 1000
    cursor, pages = after, 0
    while True:
        remaining = max(0, int((deadline - time.monotonic()) * 1000))
        page = await reader.read(build_id, after=cursor, limit=limit, wait_ms=remaining)
        pages += 1
        if not log_filter.active:
            return page
        kept = [entry for entry in page.entries if log_filter.keeps(entry)]
        cursor = page.next
        out_of_budget = remaining == 0 and pages >= MAX_FILTERED_PAGES
        if kept or page.done or not page.entries or out_of_budget:
            return LogPage(kept, page.next, page.done)


# -- the stage summary of GET /builds/{id} ----------------------------------------------------

STAGE_EVENTS = frozenset({"stage_start", "stage_end", "build_failed"})
PAGE_SIZE = 1000


@dataclass(slots=True)
class StageSummary:
    """One stage as the log tells it: status, start (ms since epoch) and duration."""

    name: str
    status: str = "running"  # running | succeeded | failed | interrupted
    started_ms: int | None = None
    duration_ms: int | None = None
    exit_code: int | None = None


@dataclass(slots=True)
class LogSummary:
    """What GET /builds/{id} reads from the log: its stages and the dev server's preview URL."""

    stages: list[StageSummary]
    preview_url: str | None = None
    source: str = "none"  # stream | archive | none


class _Summariser:
    def __init__(self) -> None:
        self.stages: dict[str, StageSummary] = {}
        self.preview_url: str | None = None

    def feed(self, record: dict[str, Any]) -> None:
        if record.get("source") != "system":
            return
        if record.get("preview_url"):  # the start stage's "Dev server listening" entry carries it
            self.preview_url = str(record["preview_url"])
        event, phase = record.get("event"), str(record.get("phase") or "")
        if event not in STAGE_EVENTS or not phase:
            return
        stage = self.stages.setdefault(phase, StageSummary(phase))
        if event == "stage_start":
            stage.status, stage.started_ms = "running", _int(record.get("ts"))
        elif event == "stage_end":
            stage.duration_ms, stage.exit_code = _int(record.get("duration_ms")), _int(record.get("exit_code"))
            if stage.status != "failed":
                stage.status = "succeeded" if stage.exit_code in (None, 0) else "failed"
        else:
            stage.status = "failed"

    def result(self, finished: bool, source: str) -> LogSummary:
        stages = list(self.stages.values())
        if finished:
            for stage in stages:
                if stage.status == "running":
                    stage.status = "interrupted"
        return LogSummary(stages, self.preview_url, source)


@tracer.capture_method(capture_response=False)
async def summarise_log(
    redis: "Redis | RedisCluster", s3: Any, bucket: str, build_id: str, *, finished: bool
) -> LogSummary:
    """Stages and preview URL from the live stream, else from the archive, else empty.

    Reads the whole log (pages of 1,000): status requests cost one pass over the log.
    """
    key = logs_key(build_id)
    summary = _Summariser()
    if await redis.exists(key):
        start = "-"
        while True:
            page: Any = await redis.xrange(key, min=start, max="+", count=PAGE_SIZE)
            for entry_id, fields in page:
                summary.feed(entry_record(entry_id, fields))
            if len(page) < PAGE_SIZE:
                return summary.result(finished, "stream")
            start = f"({entry_record(page[-1][0], {})['id']}"
    if bucket:
        try:
            await asyncio.to_thread(_feed_archive, summary, s3, bucket, build_id)
            return summary.result(finished, "archive")
        except ArchiveMissing:
            pass
    return summary.result(finished, "none")


def _feed_archive(summary: _Summariser, s3: Any, bucket: str, build_id: str) -> None:
    for record in iter_archive(s3, bucket, build_id):
        summary.feed(record)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["LogFilter", "LogSummary", "StageSummary", "read_logs", "summarise_log"]

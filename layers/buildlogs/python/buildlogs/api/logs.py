"""A build's log for API readers: live from its Redis stream, from the S3 archive once it expired.

Both sources carry the same entry ids, so one cursor works across the switch. Filters
(``phase``, ``source``) never stall a reader: ``next`` advances past the entries they reject.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.api.search import LogQuery, SearchPage, search_archive, search_stream
from buildlogs.archive.index import load_index
from buildlogs.archive.reader import (
    MAX_FILTERED_PAGES,
    ArchiveMissing,
    EntryFilter,
    iter_archive,
    read_archive_before,
    read_archive_page,
)
from buildlogs.keys import logs_key, summary_key, validate_build_id, validate_entry_id
from buildlogs.observability import logger, tracer
from buildlogs.settings import get_settings
from buildlogs.stream.entries import LogEntry, entry_record
from buildlogs.stream.reader import MAX_LIMIT, MAX_WAIT_MS, LogPage, LogReader
from buildlogs.stream.summary import LogSummary, StageSummary, Summariser

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


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
    s3: "S3Client",
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
    s3: "S3Client", bucket: str, build_id: str, after: str, limit: int, log_filter: LogFilter
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


@tracer.capture_method(capture_response=False)
async def read_logs_before(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    build_id: str,
    *,
    build_exists: Callable[[], bool],
    before: str | None,
    limit: int = 100,
    log_filter: LogFilter | None = None,
) -> LogPage:
    """The ``limit`` entries just before ``before`` (``None``: the tail), oldest first.

    Same sources and errors as :func:`read_logs`. ``prev`` continues backwards (``None``: the
    first entry was reached); ``next`` is where a forward reader continues (for the tail: the
    log's last entry, also with filters); ``done``: ``next`` is the ``end`` entry. A filtered
    page scans at most ``MAX_FILTERED_PAGES * limit`` entries, then returns with ``prev`` past
    them. The stream and the archive give the same page (the same rules, in
    ``buildlogs.stream.reader.BackwardScan``).
    """
    validate_build_id(build_id)
    if before is not None:
        validate_entry_id(before)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    log_filter = log_filter or LogFilter()
    keep: EntryFilter | None = log_filter if log_filter.active else None
    budget = MAX_FILTERED_PAGES * limit if keep is not None else limit
    if not await redis.exists(logs_key(build_id)):
        if bucket:
            try:
                return await asyncio.to_thread(read_archive_before, s3, bucket, build_id, before, limit, keep, budget)
            except ArchiveMissing:
                pass
        if not await asyncio.to_thread(build_exists):
            raise LookupError(build_id)
    return await LogReader(redis).read_before(build_id, before, limit, keep, budget)


@tracer.capture_method(capture_response=False)
async def search_logs(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    build_id: str,
    *,
    build_exists: Callable[[], bool],
    query: LogQuery,
    after: str = "0-0",
    limit: int = 100,
    log_filter: LogFilter | None = None,
) -> SearchPage:
    """Up to ``limit`` entries matching ``query`` after ``after``, and ``total``: the whole log's count.

    Same sources and errors as :func:`read_logs` (the stream while it exists, else the archive,
    streamed). The filters narrow both ``matches`` and ``total``. A known build without a log
    yet has no match.
    """
    validate_build_id(build_id)
    validate_entry_id(after)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    log_filter = log_filter or LogFilter()
    keep: EntryFilter | None = log_filter if log_filter.active else None
    if not await redis.exists(logs_key(build_id)):
        if bucket:
            try:
                return await asyncio.to_thread(search_archive, s3, bucket, build_id, query, after, limit, keep)
            except ArchiveMissing:
                pass
        if not await asyncio.to_thread(build_exists):
            raise LookupError(build_id)
    return await search_stream(redis, build_id, query, after, limit, keep)


# -- the stage summary of GET /builds/{id} ----------------------------------------------------

PAGE_SIZE = 1000
# A live summary reads at most this many pages of new entries per request (see summarise_log).
MAX_SUMMARY_PAGES = 50


@tracer.capture_method(capture_response=False)
async def summarise_log(
    redis: "Redis | RedisCluster", s3: "S3Client", bucket: str, build_id: str, *, finished: bool
) -> LogSummary:
    """Stages and preview URL of the build's log, without reading the whole log per request.

    - Archived (stream expired, or the run finished): the summary stored in the archive's
      index (``index.json``, one small GET). An archive without an index is read in full, as
      before.
    - Live: incremental. The summary so far and the id of the last entry it covers are cached
      in Redis (:func:`summary_key`, once the log outgrew one page); each request reads only
      the entries added since (XRANGE
      pages of 1,000), at most ``MAX_SUMMARY_PAGES`` pages — a log that grew by more than
      that since the previous request is summarised up to there, and the next request goes
      on from there. Results equal a full scan otherwise; concurrent requests may both write
      the cache, each a consistent (cursor, summary) pair, so the worst case is a re-read.
    - Neither: empty.
    """
    key = logs_key(build_id)
    live = bool(await redis.exists(key))
    if bucket and (finished or not live):
        index = await asyncio.to_thread(load_index, s3, bucket, build_id)
        if index is not None:
            return index.summariser().result(finished, "archive")
    if live:
        return await _live_summary(redis, build_id, finished)
    if bucket:
        try:
            summary = await asyncio.to_thread(_feed_archive, s3, bucket, build_id)
            return summary.result(finished, "archive")
        except ArchiveMissing:
            pass
    return Summariser().result(finished, "none")


async def _live_summary(redis: "Redis | RedisCluster", build_id: str, finished: bool) -> LogSummary:
    key, cache_key = logs_key(build_id), summary_key(build_id)
    summary, after = _cached_summary(build_id, await redis.get(cache_key))
    last, scanned = after, 0
    for _ in range(MAX_SUMMARY_PAGES):
        page: Any = await redis.xrange(key, min=f"({last}" if last else "-", max="+", count=PAGE_SIZE)
        scanned += len(page)
        for entry_id, fields in page:
            summary.feed(entry_record(entry_id, fields))
        if page:
            last = str(entry_record(page[-1][0], {})["id"])
        if len(page) < PAGE_SIZE:
            break
    # A log shorter than one page is re-read in one XRANGE: no cache key (and no write) for it.
    if last and last != after and (after is not None or scanned >= PAGE_SIZE):
        state = orjson.dumps({"after": last, "summary": summary.state()})
        await redis.set(cache_key, state, ex=get_settings().log_stream_ttl_seconds)
    return summary.result(finished, "stream")


def _cached_summary(build_id: str, cached: Any) -> tuple[Summariser, str | None]:
    """The cached summary and the last entry id it covers; a fresh one if absent or unreadable."""
    if cached:
        try:
            state = orjson.loads(cached)
            return Summariser.from_state(state["summary"]), validate_entry_id(state["after"])
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("summary cache unreadable: rebuilt", extra={"build_id": build_id, "error": repr(exc)})
    return Summariser(), None


def _feed_archive(s3: "S3Client", bucket: str, build_id: str) -> Summariser:
    summary = Summariser()
    records = iter_archive(s3, bucket, build_id)
    try:
        for record in records:
            if record.get("source") == "system":
                summary.feed(record)
    finally:
        records.close()
    return summary


__all__ = [
    "MAX_SUMMARY_PAGES",
    "LogFilter",
    "LogSummary",
    "StageSummary",
    "read_logs",
    "read_logs_before",
    "search_logs",
    "summarise_log",
    "summary_key",
]

"""LogReader: pages of a build's log stream, gap-free and duplicate-free across calls.

A page starts strictly after the caller's cursor (``after``, an entry id) and ``next`` is the
last id returned, so following ``next`` never skips or repeats an entry. A page holds at most
``limit`` entries and stops early at ``PAGE_BUDGET_BYTES`` of them (``buildlogs.limits``: a
Lambda response carries at most 6 MB); its cursors then continue from where it stopped. ``wait_ms`` long-polls
with XREAD BLOCK: it returns as soon as an entry arrives.

Backward pages (``read_before``, XREVRANGE) share :class:`BackwardScan` with the archive reader,
so a backward page is the same whether the stream or the archive answers it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.keys import MetaField, entry_id_key, logs_key, meta_key, validate_entry_id
from buildlogs.limits import PageBudget
from buildlogs.stream.entries import LogEntry, entry_record

MAX_LIMIT = 1000
MAX_WAIT_MS = 20_000
LAST_POSSIBLE_ID = f"{2**64 - 1}-{2**64 - 1}"  # API Gateway's 29 s limit leaves room for one 20 s wait
PAGE_SIZE = 1000  # XREVRANGE page of a filtered backward scan (pages of ~1,000 read fastest)

RecordFilter = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class LogPage:
    """Entries after the cursor, the cursor for the next call, and whether the log has ended.

    ``prev`` is only set by backward reads: pass it as ``before`` to continue backwards; ``None``
    when nothing is earlier.
    """

    entries: list[LogEntry] = field(default_factory=list)
    next: str = "0-0"
    done: bool = False
    prev: str | None = None


class BackwardScan:
    """One backward page, fed the log's records newest first (those before the bound only).

    It keeps up to ``limit`` entries ``keep`` accepts and stops after ``budget`` scanned records
    (a filtered page never stalls), or before a kept entry that would take the page past its
    byte budget (:class:`~buildlogs.limits.PageBudget`; that entry is not scanned: the next page
    starts with it). The page: the kept entries oldest first; ``next`` = the newest record
    scanned (where a forward reader goes on; for the tail: the log's last entry); ``done`` = that
    record is the ``end`` entry; ``prev`` = the oldest record scanned, or ``None`` when the scan
    reached the log's first entry (``more`` false).
    """

    def __init__(self, limit: int, keep: RecordFilter | None, budget: int) -> None:
        self._limit, self._keep, self._budget = limit, keep, max(budget, limit)
        self._kept: list[LogEntry] = []
        self._bytes = PageBudget()
        self._full = False  # a record was refused for the byte budget: older records remain
        self._scanned = 0
        self._newest: dict[str, Any] | None = None
        self._oldest = "0-0"

    def feed(self, record: dict[str, Any]) -> bool:
        """Take the next (older) record; ``False`` once the page is complete."""
        kept = self._keep is None or self._keep(record)
        if kept and not self._bytes.take(record):
            self._full = True
            return False
        if self._newest is None:
            self._newest = record
        self._scanned += 1
        self._oldest = str(record["id"])
        if kept:
            self._kept.append(LogEntry.model_validate(record))
        return len(self._kept) < self._limit and self._scanned < self._budget

    def page(self, more: bool) -> LogPage:
        """The page; ``more``: the log holds records older than the last one fed."""
        newest = self._newest
        if newest is None:
            return LogPage([], "0-0", False, None)
        more = more or self._full
        return LogPage(
            self._kept[::-1], str(newest["id"]), newest.get("event") == "end", self._oldest if more else None
        )


def backward_bound(before: str | None, end_id: str | None) -> str | None:
    """The XREVRANGE ``max`` of a backward read: before ``before``, never past ``end``; ``None``: empty."""
    if before is not None and entry_id_key(before) == (0, 0):
        return None  # nothing precedes 0-0 (and Redis rejects "(0-0")
    if end_id and (before is None or entry_id_key(end_id) < entry_id_key(before)):
        return end_id
    return "+" if before is None else f"({before}"


class LogReader:
    """Reads ``job:{build_id}:logs`` for live readers (the API and its followers)."""

    def __init__(self, redis: "Redis | RedisCluster") -> None:
        self._redis = redis

    async def read(self, job_id: str, after: str = "0-0", limit: int = 1000, wait_ms: int = 0) -> LogPage:
        """Up to ``limit`` entries after ``after`` (fewer past the byte budget); waits ``wait_ms`` for the first."""
        key = logs_key(job_id)
        validate_entry_id(after)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if not 0 <= wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"wait_ms must be between 0 and {MAX_WAIT_MS}, got {wait_ms}")
        raw: list[Any]
        if wait_ms > 0:
            # One round trip: XREAD with an explicit id returns what is already there at once, and
            # BLOCK only waits when nothing is.
            streams: Any = await self._redis.xread({key: after}, count=limit, block=wait_ms)
            raw = [pair for _key, pairs in streams or () for pair in pairs]
        elif after == LAST_POSSIBLE_ID:  # nothing can follow it (and Redis rejects "(" + it)
            raw = []
        else:
            raw = list(await self._redis.xrange(key, min=f"({after}", max="+", count=limit) or ())
        entries = _fitting(raw)
        for index, entry in enumerate(entries):
            if entry.event == "end":  # always the last entry: anything after it is a late write
                return LogPage(entries[: index + 1], entry.id, True)
        if entries:
            return LogPage(entries, entries[-1].id, False)
        return LogPage([], after, await self._ended_at_or_before(key, after, job_id))

    async def read_before(
        self, job_id: str, before: str | None, limit: int, keep: RecordFilter | None = None, budget: int = 0
    ) -> LogPage:
        """Backwards from ``before`` (``None``: the tail) with XREVRANGE: see :class:`BackwardScan`.

        Nothing after the ``end`` entry the archiver recorded counts (a late write). ``budget``
        caps the records scanned (at least ``limit``).
        """
        if before is not None:
            validate_entry_id(before)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        key = logs_key(job_id)
        scan = BackwardScan(limit, keep, budget)
        end_id: Any = await self._redis.hget(meta_key(job_id), MetaField.END_ID)
        upper = backward_bound(before, _text(end_id) if end_id else None)
        # Unfiltered: one round trip of limit + 1 (the extra record tells whether more exist).
        count = limit + 1 if keep is None else min(max(budget, limit) + 1, PAGE_SIZE)
        while upper is not None:
            raw: Any = await self._redis.xrevrange(key, max=upper, min="-", count=count)
            for position, (entry_id, fields) in enumerate(raw):
                if not scan.feed(entry_record(entry_id, fields)):
                    more = position + 1 < len(raw) or (len(raw) == count and await self._any_before(key, entry_id))
                    return scan.page(more)
            if len(raw) < count:
                break
            upper = f"({_text(raw[-1][0])}"
        return scan.page(False)

    async def _any_before(self, key: str, entry_id: Any) -> bool:
        older: Any = await self._redis.xrevrange(key, max=f"({_text(entry_id)}", min="-", count=1)
        return bool(older)

    async def _ended_at_or_before(self, key: str, after: str, build_id: str) -> bool:
        """With nothing new: the log is done if its ``end`` (recorded by the archiver, else its
        last entry) is at or before the caller's cursor."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(meta_key(build_id), MetaField.END_ID)
        pipe.xrevrange(key, max="+", min="-", count=1)
        end_id, last = await pipe.execute()
        if end_id:
            return bool(entry_id_key(end_id) <= entry_id_key(after))
        if not last:
            return False
        entry = LogEntry.from_stream(*last[0])
        return entry.event == "end" and entry_id_key(entry.id) <= entry_id_key(after)


def _fitting(raw: list[Any]) -> list[LogEntry]:
    """The entries of ``raw`` (XRANGE pairs) up to the page's byte budget (at least the first)."""
    budget, entries = PageBudget(), []
    for entry_id, fields in raw:
        record = entry_record(entry_id, fields)
        if not budget.take(record):
            break
        entries.append(LogEntry.model_validate(record))
    return entries


def _text(entry_id: str | bytes) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

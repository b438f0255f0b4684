"""LogReader: pages of a build's log stream, gap-free and duplicate-free across calls.

A page starts strictly after the caller's cursor (``after``, an entry id) and ``next`` is the
last id returned, so following ``next`` never skips or repeats an entry. ``wait_ms`` long-polls
with XREAD BLOCK: it returns as soon as an entry arrives.
"""

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.keys import MetaField, entry_id_key, logs_key, meta_key, validate_entry_id
from buildlogs.stream.entries import LogEntry

MAX_LIMIT = 1000
MAX_WAIT_MS = 20_000
LAST_POSSIBLE_ID = f"{2**64 - 1}-{2**64 - 1}"  # API Gateway's 29 s limit leaves room for one 20 s wait


@dataclass(frozen=True, slots=True)
class LogPage:
    """Entries after the cursor, the cursor for the next call, and whether the log has ended."""

    entries: list[LogEntry] = field(default_factory=list)
    next: str = "0-0"
    done: bool = False


class LogReader:
    """Reads ``job:{build_id}:logs`` for live readers (the API and its followers)."""

    def __init__(self, redis: "Redis | RedisCluster") -> None:
        self._redis = redis

    async def read(self, job_id: str, after: str = "0-0", limit: int = 1000, wait_ms: int = 0) -> LogPage:
        """Up to ``limit`` entries strictly after ``after``; waits up to ``wait_ms`` for the first."""
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
        entries = [LogEntry.from_stream(entry_id, fields) for entry_id, fields in raw]
        for index, entry in enumerate(entries):
            if entry.event == "end":  # always the last entry: anything after it is a late write
                return LogPage(entries[: index + 1], entry.id, True)
        if entries:
            return LogPage(entries, entries[-1].id, False)
        return LogPage([], after, await self._ended_at_or_before(key, after, job_id))

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

"""StreamWriter: the Redis side of a build's log stream (batches, the log's end, trimming, outages).

One batch is one pipeline round trip: XADD per entry (``MAXLEN ~``) plus, in the same trip, an
HGET of the meta hash's ``end_id``, so a stage still running after the archiver closed the log
learns it at once and deletes what it added past ``end``. A Redis error never reaches the
caller: the batch's lines are counted as dropped and reported once Redis answers again.

One retry layer. The client from :func:`buildlogs.clients.create_redis` already retries a
failed command (3 retries, backoff 0.1, 0.2, 0.4 s); this module does not retry on top of it.
A batch gets one attempt, the client's retries included, bounded by ``WRITE_TIMEOUT_S``. If it
fails, the writer is in outage mode: later batches are dropped without any I/O, except a probe
(one ordinary attempt) at most every ``OUTAGE_PROBE_INTERVAL_S`` after the last failure, and a
forced flush (the stage's ``finally``), which tries once whatever the interval.

Worst-case stall one write adds to a stage: ``WRITE_TIMEOUT_S`` = 3 s, for a Redis that
accepts connections and never answers (measured 3.0 s; with the streamer's former retries on
top of the client's it was 4 x 3 s + 0.35 s = 12.4 s). A Redis that refuses connections costs
0.7 s, the client's backoff (was 3.2 s). During an outage, writes between probes cost nothing
and a probe costs up to 3 s again: over a hung Redis, a stage with steady output is held at
most 3 s in every 3.5 s. A forced flush attempts once (if that fails, its other batches are
dropped), so per call: ``on_stdout``, ``on_stderr``, ``write_event`` at most 3 s; ``flush``
and ``close`` 3 s plus 3 s for the trimming check (same deadline, skipped during an outage, so
only if Redis hangs right after taking the last batch); ``stage`` 6 s (two forced flushes).
"""

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from buildlogs.keys import MetaField, entry_id_key, logs_key, meta_key
from buildlogs.observability import logger
from buildlogs.stream.lines import replace_lone_surrogates

# The longest one write attempt may take (a connect plus one pipeline round trip, with the
# client's own retries inside it): a hung Redis must not hold a stage until its Lambda timeout.
WRITE_TIMEOUT_S = 3.0
# While Redis is known to be down, try again at most this often (lines in between are dropped).
OUTAGE_PROBE_INTERVAL_S = 0.5

Entry = dict[str, Any]


def now_ms() -> int:
    """The ``ts`` of an entry: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _system_entry(phase: str, text: str, **fields: Any) -> Entry:
    """A ``source=system`` entry of ``phase`` (events such as ``truncated``), stamped now."""
    return {"ts": now_ms(), "source": "system", "phase": phase, "text": text, **fields}


class StreamWriter:
    """Writes entries to ``job:{build_id}:logs``; never raises a Redis error to its caller.

    ``redis`` is a ``redis.asyncio`` client (real, cluster or fakeredis). The caller serialises
    :meth:`write` calls (one batch at a time, in order). ``lines_written``, ``batches_written``
    and ``lines_dropped`` count what happened to the entries it was given.
    """

    def __init__(self, redis: "Redis | RedisCluster", build_id: str, maxlen: int) -> None:
        self._redis = redis
        self.build_id = build_id
        self._key = logs_key(build_id)  # validates the id before any key exists
        self._meta_key = meta_key(build_id)
        self._maxlen = maxlen
        # Outage bookkeeping: lines lost while Redis did not answer, not yet reported.
        self._lost = 0
        self._down_since: float | None = None
        self._last_probe = 0.0
        self._written_since_check = 0
        self._ended = False  # the archiver closed the log: nothing more is written
        self.lines_written = 0
        self.batches_written = 0
        self.lines_dropped = 0

    @property
    def down(self) -> bool:
        """Whether the last attempt failed (outage mode: batches are dropped between probes)."""
        return self._down_since is not None

    @property
    def unreported_loss(self) -> int:
        """Lines dropped during an outage that no loss report has counted yet."""
        return self._lost

    async def write(self, batch: list[Entry], phase: str, *, force: bool = False) -> None:
        """Write one batch, preceded by the loss report if lines were lost; or count it as lost.

        During an outage the batch is dropped without I/O unless a probe is due or ``force``
        (a flush the caller waits for) is set. ``phase`` tags the loss report.
        """
        probing = self._down_since is not None
        if probing and not force and time.monotonic() - self._last_probe < OUTAGE_PROBE_INTERVAL_S:
            self._drop(len(batch))
            return
        entries = [self._loss_report(phase), *batch] if self._lost else batch
        try:
            await self._xadd_all(entries)
        except (RedisError, OSError) as exc:
            if not probing:
                self._down_since = time.monotonic()
                logger.warning(
                    "redis unavailable for %s, dropping lines: %r",
                    self.build_id,
                    exc,
                    extra={"build_id": self.build_id, "error": repr(exc)[:300]},
                )
            self._last_probe = time.monotonic()
            self._drop(len(batch))
            return
        if self._down_since is not None:
            outage_s = time.monotonic() - self._down_since
            logger.warning(
                "redis answers again for %s after %.1f s; %d lines were lost",
                self.build_id,
                outage_s,
                self._lost,
                extra={"build_id": self.build_id, "outage_s": round(outage_s, 3), "lines_lost": self._lost},
            )
        self._down_since = None
        self._lost = 0
        self.lines_written += len(entries)
        self.batches_written += 1
        self._written_since_check += len(entries)

    def _drop(self, count: int) -> None:
        self._lost += count
        self.lines_dropped += count

    def _loss_report(self, phase: str) -> Entry:
        text = f"[{self._lost} log lines lost: Redis was unavailable]"
        return _system_entry(phase, text, event="truncated", dropped=self._lost, reason="redis_unavailable")

    async def _xadd_all(self, batch: list[Entry]) -> None:
        """One attempt, bounded by one deadline (asyncio's TimeoutError is an OSError).

        ``asyncio.timeout`` rather than ``wait_for``: no task per batch. A lone surrogate in a
        ``str`` chunk fails the encoding before anything is sent; the batch is then cleaned and
        sent again within the same deadline (rare, so not checked upfront).
        """
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            try:
                await self._pipeline(batch)
            except UnicodeEncodeError:
                for entry in batch:
                    for name, value in entry.items():
                        if isinstance(value, str):
                            entry[name] = replace_lone_surrogates(value)
                await self._pipeline(batch)

    async def _pipeline(self, batch: list[Entry]) -> None:
        """XADD the batch in one round trip, and learn in the same trip whether the log has ended.

        The archiver records the ``end`` entry's id in the meta hash. A stage still running after
        its execution was aborted or timed out must not write past ``end`` (it is always the last
        entry): what it added is deleted at once and it writes nothing more.
        """
        if self._ended:
            return
        pipe = self._redis.pipeline(transaction=False)
        key, maxlen, xadd = self._key, self._maxlen, pipe.xadd
        pipe.hget(self._meta_key, MetaField.END_ID)
        for entry in batch:
            xadd(key, entry, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        end_id, *_added = await pipe.execute()
        if end_id:
            self._ended = True
            logger.warning(
                "the log of %s has ended (%s); later lines are discarded",
                self.build_id,
                end_id,
                extra={"build_id": self.build_id, "end_id": end_id},
            )
            await self._delete_after(end_id)

    async def _delete_after(self, end_id: str) -> None:
        """Remove every entry after ``end`` (ours, or another late writer's)."""
        late: Any = await self._redis.xrange(self._key, min=f"({end_id}", max="+")
        if late:
            await self._redis.xdel(self._key, *(entry_id for entry_id, _fields in late))

    # -- trimming notice ------------------------------------------------------------------------

    async def report_trimming(self, phase: str) -> None:
        """Keep one up-to-date ``truncated`` entry near the end once the stream has been trimmed.

        Only if entries were written since the last check, the log has not ended and Redis is
        not down; bounded by ``WRITE_TIMEOUT_S`` like a batch. Errors are logged, never raised.
        """
        if not self._written_since_check:
            return
        self._written_since_check = 0
        if self._ended or self._down_since is not None:
            return
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self._replace_notice(phase)
        except (RedisError, OSError) as exc:
            logger.warning(
                "could not write the trimming notice for %s: %r",
                self.build_id,
                exc,
                extra={"build_id": self.build_id, "error": repr(exc)[:300]},
            )

    async def _replace_notice(self, phase: str) -> None:
        """Entries removed = entries added - length; of those, the older notices we replaced are
        not log lines. A notice written when trimming began would itself be trimmed away, so
        every stage's final flush replaces the previous notice with a fresh one (shared by every
        stage writing the stream through the meta hash).
        """
        pipe = self._redis.pipeline(transaction=False)
        pipe.xinfo_stream(self._key)
        pipe.hmget(
            self._meta_key, [MetaField.TRIM_NOTICE_ID, MetaField.TRIM_NOTICES, MetaField.TRIM_DROPPED, MetaField.END_ID]
        )
        info, (notice_id, notices, reported, end_id) = await pipe.execute()
        if end_id:  # the log is closed: nothing may follow its end, not even a notice
            self._ended = True
            return
        removed = int(info["entries-added"]) - int(info["length"])
        if removed <= 0:
            return
        first = info.get("first-entry")
        present = bool(notice_id and first and entry_id_key(notice_id) >= entry_id_key(first[0]))
        dropped = removed - (int(notices or 0) - (1 if present else 0))
        if dropped <= 0 or (present and int(reported or 0) == dropped):
            return
        entry = _system_entry(
            phase, f"[log truncated: {dropped} earlier lines dropped]", event="truncated", dropped=dropped
        )
        new_id = await self._redis.xadd(self._key, entry)  # type: ignore[arg-type]
        pipe = self._redis.pipeline(transaction=False)
        if present:
            pipe.xdel(self._key, notice_id)
        pipe.hset(self._meta_key, mapping={MetaField.TRIM_NOTICE_ID: new_id, MetaField.TRIM_DROPPED: dropped})
        pipe.hincrby(self._meta_key, MetaField.TRIM_NOTICES, 1)
        await pipe.execute()

"""LogStreamer: command output, line by line, into a build's Redis Stream.

Chunks (``str`` from E2B, ``bytes`` from a local process) are split into lines per source,
tagged with the current phase and written in batches — one pipeline round trip per batch —
when ``flush_lines`` lines are buffered or ``flush_interval_ms`` has passed since the oldest
buffered line, whether or not more output arrives. A Redis error never reaches the caller.
"""

import asyncio
import codecs
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from buildlogs.keys import entry_id_key, logs_key, meta_key
from buildlogs.pipeline.stages import banner_for
from buildlogs.settings import get_settings

logger = logging.getLogger(__name__)

MASK = "***"
# Retries of one batch while Redis does not answer: short, so a build is never held up for long.
RETRY_DELAYS_S = (0.05, 0.1, 0.2)
# The longest one write attempt may take (a connect plus one pipeline round trip).
WRITE_TIMEOUT_S = 3.0
_SURROGATE = re.compile("[\ud800-\udfff]")
# While Redis is known to be down, try again at most this often (lines in between are dropped).
OUTAGE_PROBE_INTERVAL_S = 0.5
# Meta hash fields of the trimming bookkeeping (shared by every stage writing the stream).
NOTICE_ID_FIELD = "trim_notice_id"
NOTICES_FIELD = "trim_notices"
NOTICE_DROPPED_FIELD = "trim_dropped"
# Set by the archiver when it appends the ``end`` entry: nothing may follow it.
END_ID_FIELD = "end_id"

Entry = dict[str, Any]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _LineSplitter:
    """Turns one source's chunks into complete lines, keeping what a terminal would show.

    ``\\r\\n`` is a newline even when split across chunks (``\\r`` is kept until the next chunk);
    a bare ``\\r`` lets the next non-empty segment replace the line; a line longer than
    ``cap`` characters keeps its head and counts the rest as overflow bytes, so memory stays
    bounded whatever a process prints without a newline.
    """

    __slots__ = ("_cap", "_decoder", "_overflow", "_parts", "_pending_cr", "_size")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._size = 0
        self._overflow = 0
        self._pending_cr = False

    def feed(self, chunk: str | bytes) -> list[tuple[str, int]]:
        """Complete lines in ``chunk`` as ``(text, overflow_bytes)``; the rest waits for more."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        lines: list[tuple[str, int]] = []
        if not text:
            return lines
        pieces = text.split("\n")
        for piece in pieces[:-1]:
            self._append(piece)
            lines.append(self._take())
        self._append(pieces[-1])
        return lines

    @property
    def size(self) -> int:
        return self._size

    def drain(self) -> tuple[str, int] | None:
        """The trailing partial line (with any incomplete UTF-8 sequence as U+FFFD), if any."""
        self._append(self._decoder.decode(b"", final=True))
        if not self._parts and not self._overflow:
            return None
        return self._take()

    def _append(self, text: str) -> None:
        if not text:
            return
        if "\r" not in text and not self._pending_cr:
            self._add(text)
            return
        for index, segment in enumerate(text.split("\r")):
            if index:
                self._pending_cr = True
            if segment:
                if self._pending_cr:
                    self._parts.clear()
                    self._size = 0
                    self._overflow = 0
                    self._pending_cr = False
                self._add(segment)

    def _add(self, text: str) -> None:
        room = self._cap - self._size
        if len(text) <= room:
            self._parts.append(text)
            self._size += len(text)
            return
        if room > 0:
            self._parts.append(text[:room])
            self._size += room
        self._overflow += len(text[max(room, 0) :].encode("utf-8", "surrogatepass"))

    def _take(self) -> tuple[str, int]:
        line = "".join(self._parts) if len(self._parts) != 1 else self._parts[0]
        overflow = self._overflow
        self._parts.clear()
        self._size = 0
        self._overflow = 0
        self._pending_cr = False
        return line, overflow


class LogStreamer:
    """Streams one build's output into ``job:{build_id}:logs``, tagged with phase and source.

    ``redis`` is a ``redis.asyncio`` client (real, cluster or fakeredis). Options left ``None``
    take their setting (``LOG_FLUSH_LINES``, ``LOG_FLUSH_INTERVAL_MS``, ``LOG_MAX_LINE_BYTES``,
    ``LOG_STREAM_MAXLEN``). Call :meth:`flush` (or :meth:`close`) in ``finally``.
    """

    def __init__(
        self,
        redis: "Redis | RedisCluster",
        job_id: str,
        phase: str,
        *,
        secrets: Iterable[str] = (),
        flush_lines: int | None = None,
        flush_interval_ms: int | None = None,
        max_line_bytes: int | None = None,
        maxlen: int | None = None,
    ) -> None:
        settings = get_settings()
        self._redis = redis
        self.job_id = job_id
        self._key = logs_key(job_id)  # validates the id before any key exists
        self._meta_key = meta_key(job_id)
        self._phase = phase
        self._flush_lines = max(1, flush_lines if flush_lines is not None else settings.log_flush_lines)
        interval_ms = flush_interval_ms if flush_interval_ms is not None else settings.log_flush_interval_ms
        self._flush_interval_s = max(0, interval_ms) / 1000
        self._max_line_bytes = max_line_bytes if max_line_bytes is not None else settings.log_max_line_bytes
        self._maxlen = maxlen if maxlen is not None else settings.log_stream_maxlen
        self._mask = masker(secrets)
        # Keep enough of an endless line to fill max_line_bytes even after masking shrinks it.
        self._line_cap = self._max_line_bytes + 4096
        self._splitters = {"stdout": _LineSplitter(self._line_cap), "stderr": _LineSplitter(self._line_cap)}
        self._buffer: list[Entry] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._stage_started: float | None = None
        # Outage bookkeeping: lines lost while Redis did not answer, not yet reported.
        self._lost = 0
        self._down_since: float | None = None
        self._last_probe = 0.0
        self._written_since_check = 0
        self._ended = False  # the archiver closed the log: nothing more is written
        self.lines_written = 0
        self.batches_written = 0
        self.lines_dropped = 0

    # -- public API -----------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        """The stage the next lines are tagged with."""
        return self._phase

    @property
    def buffered_lines(self) -> int:
        """Complete lines waiting for their batch (bounded by ``flush_lines`` plus one chunk)."""
        return len(self._buffer)

    @property
    def pending_line_chars(self) -> int:
        """Characters of partial lines held back for their newline (bounded per source)."""
        return sum(splitter.size for splitter in self._splitters.values())

    async def on_stdout(self, chunk: str | bytes) -> None:
        """Callback for a command's stdout: a raw chunk, not necessarily whole lines."""
        await self._on_chunk("stdout", chunk)

    async def on_stderr(self, chunk: str | bytes) -> None:
        """Callback for a command's stderr."""
        await self._on_chunk("stderr", chunk)

    async def write_event(self, text: str, source: str = "system", **fields: Any) -> None:
        """Write one entry now (after the lines already buffered), e.g. ``event="build_failed"``."""
        entry = self._entry(source, self._fit(self._mask(text), 0), _now_ms())
        for name, value in fields.items():
            if value is not None:
                entry[name] = str(value) if not isinstance(value, bool) else str(value).lower()
        self._buffer.append(entry)
        await self._flush_buffer()

    async def stage(self, name: str) -> None:
        """Flush, close the current stage (``stage_end``), open ``name`` (``stage_start``)."""
        await self.flush(check_trim=False)
        if self._stage_started is not None:
            await self.end_stage()
        self._phase = name
        self._stage_started = time.monotonic()
        await self.write_event(banner_for(name), event="stage_start")

    async def end_stage(self, **fields: Any) -> None:
        """Write ``stage_end`` for the current stage with its ``duration_ms`` (and e.g. exit_code)."""
        await self.flush(check_trim=False)
        started = self._stage_started if self._stage_started is not None else time.monotonic()
        duration_ms = int((time.monotonic() - started) * 1000)
        self._stage_started = None
        await self.write_event(f"{self._phase} finished", event="stage_end", duration_ms=duration_ms, **fields)

    async def flush(self, *, check_trim: bool = True) -> None:
        """Write every buffered line and each source's trailing partial line. Call it in ``finally``."""
        now = _now_ms()
        for source, splitter in self._splitters.items():
            tail = splitter.drain()
            if tail is not None:
                self._buffer.append(self._entry(source, self._fit(self._mask(tail[0]), tail[1]), now))
        await self._flush_buffer(force=True)
        if check_trim and self._written_since_check:
            await self._report_trimming()

    async def close(self) -> None:
        """Flush everything and stop the interval timer. The Redis client stays the caller's."""
        self._cancel_timer()
        await self.flush()
        self._cancel_timer()

    async def __aenter__(self) -> "LogStreamer":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- lines ----------------------------------------------------------------------------------

    async def _on_chunk(self, source: str, chunk: str | bytes) -> None:
        lines = self._splitters[source].feed(chunk)
        if not lines:
            return
        now = _now_ms()
        mask, fit, entry, buffer = self._mask, self._fit, self._entry, self._buffer
        for text, overflow in lines:
            buffer.append(entry(source, fit(mask(text), overflow), now))
        if len(buffer) >= self._flush_lines:
            await self._flush_buffer(full_only=True)
        elif self._timer is None and self._timer_task is None:
            self._arm_timer()

    def _entry(self, source: str, text: str, ts: int) -> Entry:
        return {"ts": ts, "source": source, "phase": self._phase, "text": text}

    def _fit(self, text: str, overflow: int) -> str:
        """Cut a line longer than ``max_line_bytes`` (UTF-8) with a visible ``…[+N bytes]``."""
        limit = self._max_line_bytes
        if len(text) * 4 <= limit and not overflow:
            return text
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= limit and not overflow:
            return text
        head = data[:limit].decode("utf-8", "ignore")
        dropped = len(data) - len(head.encode("utf-8", "surrogatepass")) + overflow
        return f"{head}…[+{dropped} bytes]"

    # -- batching -------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._flush_interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._buffer and self._timer_task is None:
            self._timer_task = asyncio.get_running_loop().create_task(self._timed_flush())

    async def _timed_flush(self) -> None:
        try:
            await self._flush_buffer()
        finally:
            self._timer_task = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _flush_buffer(self, full_only: bool = False, force: bool = False) -> None:
        """Write buffered entries in order, one round trip per batch of ``flush_lines``.

        ``full_only`` (a batch filled up) writes only full batches; the remainder waits for
        more lines or the interval timer, so batches stay large under a steady stream. ``force``
        (a flush the caller waits for, e.g. in ``finally``) tries Redis even during an outage
        and reports earlier losses even with no line left to write.
        """
        async with self._lock:
            size, attempted = self._flush_lines, False
            while self._buffer and (not full_only or len(self._buffer) >= size):
                batch = self._buffer[:size]
                del self._buffer[:size]
                await self._write_batch(batch, force)
                attempted = True
            if force and self._lost and not attempted:
                await self._write_batch([], force)  # the loss report on its own
            if not self._buffer:
                self._cancel_timer()
            elif self._timer is None and self._timer_task is None:
                self._arm_timer()

    async def _write_batch(self, batch: list[Entry], force: bool = False) -> None:
        """Write one batch; while Redis does not answer, count its lines as lost instead."""
        probing = self._down_since is not None
        if probing and not force and time.monotonic() - self._last_probe < OUTAGE_PROBE_INTERVAL_S:
            self._drop(len(batch))
            return
        entries = [self._loss_report(), *batch] if self._lost else batch
        error: BaseException | None = None
        for delay in (0.0,) if probing else (0.0, *RETRY_DELAYS_S):
            if delay:
                await asyncio.sleep(delay)
            try:
                await self._xadd_all(entries)
            except (RedisError, OSError) as exc:
                error = exc
                continue
            if probing:
                logger.warning("redis answers again for %s; %d lines were lost", self.job_id, self._lost)
            self._down_since = None
            self._lost = 0
            self.lines_written += len(entries)
            self.batches_written += 1
            self._written_since_check += len(entries)
            return
        if not probing:
            self._down_since = time.monotonic()
            logger.warning("redis unavailable for %s, dropping lines: %r", self.job_id, error)
        self._last_probe = time.monotonic()
        self._drop(len(batch))

    def _drop(self, count: int) -> None:
        self._lost += count
        self.lines_dropped += count

    def _loss_report(self) -> Entry:
        entry = self._entry("system", f"[{self._lost} log lines lost: Redis was unavailable]", _now_ms())
        entry.update(event="truncated", dropped=self._lost, reason="redis_unavailable")
        return entry

    async def _xadd_all(self, batch: list[Entry]) -> None:
        """One bounded attempt: a Redis that accepts connections but never answers must not
        hold a stage until its Lambda timeout (asyncio's TimeoutError is an OSError)."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):  # no task per batch, unlike wait_for
                await self._pipeline(batch)
        except UnicodeEncodeError:  # lone surrogates in a str chunk: Redis wants UTF-8 (rare, so not checked upfront)
            for entry in batch:
                for name, value in entry.items():
                    if isinstance(value, str):
                        entry[name] = _SURROGATE.sub("\ufffd", value)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
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
        key, maxlen = self._key, self._maxlen
        pipe.hget(self._meta_key, END_ID_FIELD)
        for entry in batch:
            pipe.xadd(key, entry, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        end_id, *_added = await pipe.execute()
        if end_id:
            self._ended = True
            logger.warning("the log of %s has ended (%s); later lines are discarded", self.job_id, end_id)
            await self._delete_after(end_id)

    async def _delete_after(self, end_id: str) -> None:
        """Remove every entry after ``end`` (ours, or another late writer's)."""
        late: Any = await self._redis.xrange(self._key, min=f"({end_id}", max="+")
        if late:
            await self._redis.xdel(self._key, *(entry_id for entry_id, _fields in late))

    # -- trimming notice ------------------------------------------------------------------------

    async def _report_trimming(self) -> None:
        """Keep one up-to-date ``truncated`` entry near the end once the stream has been trimmed.

        Entries removed = entries added - length; of those, the older notices we replaced are
        not log lines. A notice written when trimming began would itself be trimmed away, so
        every stage's final flush replaces the previous notice with a fresh one.
        """
        self._written_since_check = 0
        if self._ended:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xinfo_stream(self._key)
            pipe.hmget(self._meta_key, [NOTICE_ID_FIELD, NOTICES_FIELD, NOTICE_DROPPED_FIELD, END_ID_FIELD])
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
            entry = self._entry("system", f"[log truncated: {dropped} earlier lines dropped]", _now_ms())
            entry.update(event="truncated", dropped=dropped)
            new_id = await self._redis.xadd(self._key, entry)  # type: ignore[arg-type]
            pipe = self._redis.pipeline(transaction=False)
            if present:
                pipe.xdel(self._key, notice_id)
            pipe.hset(self._meta_key, mapping={NOTICE_ID_FIELD: new_id, NOTICE_DROPPED_FIELD: dropped})
            pipe.hincrby(self._meta_key, NOTICES_FIELD, 1)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("could not write the trimming notice for %s: %r", self.job_id, exc)


def masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function replacing every secret value (and each line of a multi-line one) by ``***``."""
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        values.update(part for part in secret.replace("\r", "\n").split("\n") if part)
    if not values:
        return _identity
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))

    def mask(text: str) -> str:
        return pattern.sub(MASK, text) if text else text

    return mask


def _identity(text: str) -> str:
    return text

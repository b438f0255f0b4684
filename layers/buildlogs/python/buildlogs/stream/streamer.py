"""LogStreamer: command output, line by line, into a build's Redis Stream.

Chunks (``str`` from E2B, ``bytes`` from a local process) are split into lines per source,
tagged with the current phase and written in batches — one pipeline round trip per batch —
when ``flush_lines`` lines are buffered or ``flush_interval_ms`` has passed since the oldest
buffered line, whether or not more output arrives. A Redis error never reaches the caller.

This module owns buffering, the flush timer and the stage API; line shaping (splitting,
``\\r``, masking, cutting) is :mod:`buildlogs.stream.lines`, the Redis side (batches, the log's
end, trimming notice, outages, the write deadline) is :mod:`buildlogs.stream.writer`.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.pipeline.stages import banner_for
from buildlogs.settings import get_settings
from buildlogs.stream.lines import LineSplitter, fit_line, masker
from buildlogs.stream.writer import Entry, StreamWriter, now_ms


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
        self.job_id = job_id
        self._phase = phase
        self._flush_lines = max(1, flush_lines if flush_lines is not None else settings.log_flush_lines)
        interval_ms = flush_interval_ms if flush_interval_ms is not None else settings.log_flush_interval_ms
        self._flush_interval_s = max(0, interval_ms) / 1000
        self._max_line_bytes = max_line_bytes if max_line_bytes is not None else settings.log_max_line_bytes
        maxlen = maxlen if maxlen is not None else settings.log_stream_maxlen
        self._writer = StreamWriter(redis, job_id, maxlen)  # validates the id before any key exists
        self._mask = masker(secrets)
        # Keep enough of an endless line to fill max_line_bytes even after masking shrinks it.
        self._line_cap = self._max_line_bytes + 4096
        self._splitters = {"stdout": LineSplitter(self._line_cap), "stderr": LineSplitter(self._line_cap)}
        self._buffer: list[Entry] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._stage_started: float | None = None

    # -- public API -----------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        """The stage the next lines are tagged with."""
        return self._phase

    @property
    def lines_written(self) -> int:
        """Entries Redis accepted (loss reports included)."""
        return self._writer.lines_written

    @property
    def batches_written(self) -> int:
        """Round trips that wrote a batch."""
        return self._writer.batches_written

    @property
    def lines_dropped(self) -> int:
        """Lines lost because Redis did not answer (reported in the stream once it does)."""
        return self._writer.lines_dropped

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
        entry = self._entry(source, text, now_ms())
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
        now = now_ms()
        for source, splitter in self._splitters.items():
            tail = splitter.drain()
            if tail is not None:
                self._buffer.append(self._entry(source, tail[0], now, tail[1]))
        await self._flush_buffer(force=True)
        if check_trim:
            await self._writer.report_trimming(self._phase)

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
        now = now_ms()
        # The hot path: locals only, one mask call and one fit call per line (fit_line returns
        # a short line at once, without encoding it).
        mask, fit, limit, phase = self._mask, fit_line, self._max_line_bytes, self._phase
        append = self._buffer.append
        for text, overflow in lines:
            append({"ts": now, "source": source, "phase": phase, "text": fit(mask(text), overflow, limit)})
        if len(self._buffer) >= self._flush_lines:
            await self._flush_buffer(full_only=True)
        elif self._timer is None and self._timer_task is None:
            self._arm_timer()

    def _entry(self, source: str, text: str, ts: int, overflow: int = 0) -> Entry:
        """An entry of the current phase, its text masked, then cut (off the hot path)."""
        text = fit_line(self._mask(text), overflow, self._max_line_bytes)
        return {"ts": ts, "source": source, "phase": self._phase, "text": text}

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
        and reports earlier losses even with no line left to write; it tries once per flush,
        so a hung Redis costs the caller one write deadline, not one per batch.
        """
        async with self._lock:
            writer, size, attempted = self._writer, self._flush_lines, False
            while self._buffer and (not full_only or len(self._buffer) >= size):
                batch = self._buffer[:size]
                del self._buffer[:size]
                await writer.write(batch, self._phase, force=force)
                attempted = True
                force = force and not writer.down
            if force and writer.unreported_loss and not attempted:
                await writer.write([], self._phase, force=True)  # the loss report on its own
            if not self._buffer:
                self._cancel_timer()
            elif self._timer is None and self._timer_task is None:
                self._arm_timer()

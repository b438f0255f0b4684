"""Terminal rendering of a build's log, shared by ``run``, ``tail`` and ``submit --follow`` (rich).

One line per entry: an optional timestamp, the stage, a marker (``!`` stderr, ``#`` system,
``✓``/``✗`` a stage's end, ``✗`` the failure line) and the text. On a terminal lines are coloured,
long ones folded under the text column and cut after a few rows (the whole line stays in the
stream, the archive and ``--json``), and a live status line under the log shows the running stage
with a spinner, its elapsed time and its lines so far. Off a terminal, or with ``NO_COLOR``, the
output is plain: the same lines, whole, no ANSI, no live line (rich's Console detects both).
``--json`` prints each entry as the archive's NDJSON object and nothing else on stdout.

The end of a run gets a summary (:func:`build_summary`) from ``GET /builds/{id}``: each stage's
status and duration, total lines, total time, the preview URL and the archive location.
"""

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, tzinfo
from types import TracebackType
from typing import Any, TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from buildlogs import statuses
from buildlogs.pipeline.stages import STAGES, STAGES_BY_NAME
from buildlogs.statuses import ExecutionStatus
from buildlogs.stream.entries import LogEntry
from buildlogs.stream.summary import StageStatus, int_or_none

PHASE_WIDTH = max(len(stage.name) for stage in STAGES)
MAX_ROWS = 8  # a long line takes at most this many terminal rows, then is cut
_PHASE_STYLES = ("magenta", "blue", "yellow", "green", "cyan", "bright_magenta", "bright_blue")
_STAGE_ORDER = {stage.name: index for index, stage in enumerate(STAGES)}
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_END_STYLES: dict[str, str] = {
    ExecutionStatus.SUCCEEDED.value: "bold green",
    ExecutionStatus.FAILED.value: "bold red",
    ExecutionStatus.TIMED_OUT.value: "bold yellow",
    ExecutionStatus.ABORTED.value: "bold yellow",
}
_STAGE_STATUS: dict[str, tuple[str, str]] = {
    StageStatus.SUCCEEDED.value: ("✓", "green"),
    StageStatus.FAILED.value: ("✗", "red"),
    StageStatus.RUNNING.value: ("…", "cyan"),
    StageStatus.INTERRUPTED.value: ("■", "yellow"),
    StageStatus.SKIPPED.value: ("–", "dim"),
}


def make_console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A Console on ``file`` (default: the process's stdout/stderr, looked up at each write).

    rich decides colour and interactivity itself: a terminal, ``NO_COLOR``, ``FORCE_COLOR``,
    ``TERM=dumb``. No markup or highlighting: log text is printed as it is.
    """
    return Console(file=file, stderr=stderr, highlight=False, markup=False, emoji=False)


def is_plain(console: Console) -> bool:
    """Plain output: no colour (not a terminal, or NO_COLOR)."""
    return console.color_system is None or console.no_color


def is_tty(console: Console) -> bool:
    """``console`` writes to a real terminal (not a pipe or a file, whatever FORCE_COLOR says)."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty and isatty())


def is_live_terminal(console: Console) -> bool:
    """A live status line only on a real, interactive, coloured terminal."""
    return console.is_interactive and not is_plain(console) and is_tty(console)


def now_ms() -> int:
    """The wall clock in ms since the epoch (an entry's ``ts``)."""
    return time.time_ns() // 1_000_000


def format_duration(ms: int | float | None) -> str:
    """``340ms``, ``12.3s``, ``2m 05s``, ``1h 02m``; ``-`` when unknown."""
    if ms is None:
        return "-"
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def format_timestamp(ts_ms: int, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS.mmm`` of an entry's ``ts`` (local time unless ``tz``)."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=tz)
    return moment.strftime("%H:%M:%S.") + f"{ts_ms % 1000:03d}"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def phase_style(phase: str) -> str:
    index = _STAGE_ORDER.get(phase, sum(phase.encode()))
    return _PHASE_STYLES[index % len(_PHASE_STYLES)]


class EntryFormat:
    """How one entry reads: marker, text and style (the same in plain and coloured output)."""

    def __init__(self, *, timestamps: bool = False, tz: tzinfo | None = None) -> None:
        self.timestamps = timestamps
        self.tz = tz
        self.failed_phases: set[str] = set()  # a stage whose build_failed came before its stage_end

    def parts(self, entry: LogEntry) -> tuple[str, str, str, str]:
        """``(prefix, marker, text, style)`` of ``entry``; ``prefix`` is the timestamp and stage."""
        prefix = f"[{entry.phase:>{PHASE_WIDTH}}]"
        if self.timestamps:
            prefix = f"{format_timestamp(entry.ts, self.tz)} {prefix}"
        text, event = entry.text, entry.event
        if event == "stage_end":
            exit_code = int_or_none(getattr(entry, "exit_code", None))
            failed = entry.phase in self.failed_phases or exit_code not in (None, 0)
            details = [format_duration(int_or_none(getattr(entry, "duration_ms", None)))]
            if exit_code is not None:
                details.append(f"exit {exit_code}")
            return prefix, "✗" if failed else "✓", f"{text} · {' · '.join(details)}", "red" if failed else "green"
        if event == "build_failed":
            self.failed_phases.add(entry.phase)
            return prefix, "✗", text, "bold red"
        if event == "end":
            return prefix, "#", text, _END_STYLES.get(str(getattr(entry, "status", "")), "bold")
        if event == "truncated":
            return prefix, "!", text, "yellow"
        if entry.source == "stderr":
            return prefix, "!", text, "red"
        if entry.source == "system":
            return prefix, "#", text, "bold cyan"
        return prefix, " ", text, ""

    def plain(self, entry: LogEntry) -> str:
        prefix, marker, text, _style = self.parts(entry)
        return f"{prefix} {marker} {strip_ansi(text)}"


def _styled_line(line_format: EntryFormat, entry: LogEntry) -> tuple[Text, int]:
    """The coloured line, and how many cells its prefix (timestamp, stage, marker) takes."""
    prefix, marker, text, style = line_format.parts(entry)
    line = Text()
    if line_format.timestamps:
        stamp, prefix = prefix.split(" ", 1)
        line.append(stamp + " ", style="dim")
    line.append(prefix, style=phase_style(entry.phase))
    line.append(f" {marker} ", style=style or "dim")
    prefix_cells = line.cell_len
    line.append_text(Text.from_ansi(text, style=style))
    return line, prefix_cells


class StatusLine:
    """The live line under the log: spinner, running stage, its elapsed time and lines so far."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._spinner = Spinner("dots", style="cyan")
        self.phase: str | None = None
        self.started_ms: int | None = None
        self.lines = 0
        self.total = 0
        self.active = True

    def saw(self, entry: LogEntry) -> None:
        self.total += 1
        if entry.event == "stage_start" or entry.phase != self.phase:
            self.phase, self.started_ms, self.lines = entry.phase, entry.ts, 0
        if entry.event in ("stage_end", "end"):
            self.active = entry.event != "end"
            self.phase = None if entry.event == "stage_end" else self.phase
        elif entry.source != "system":
            self.lines += 1

    def text(self) -> Text:
        if self.phase is None:
            return Text(f"waiting for the next stage · {self.total} lines", style="dim")
        stage = STAGES_BY_NAME.get(self.phase)
        elapsed = self._now_ms() - (self.started_ms or self._now_ms())
        line = Text()
        line.append(self.phase, style=f"bold {phase_style(self.phase)}")
        if stage is not None:
            line.append(f" {stage.label}", style="bold")
        line.append(f" · {format_duration(elapsed)} · {self.lines} lines", style="dim")
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.active:
            self._spinner.update(text=self.text())
            yield self._spinner


class LogView:
    """Prints entries to ``out`` (plain, coloured or NDJSON) and notices to ``err``.

    Use it as a context manager: on a live terminal it shows the status line until it exits.
    ``live`` forces the status line on or off (default: :func:`is_live_terminal`).
    """

    def __init__(
        self,
        out: Console,
        err: Console,
        *,
        timestamps: bool = False,
        json_lines: bool = False,
        live: bool | None = None,
        tz: tzinfo | None = None,
        now_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.out, self.err = out, err
        self.json_lines = json_lines
        self.format = EntryFormat(timestamps=timestamps, tz=tz)
        self.plain = json_lines or is_plain(out)
        self.status = StatusLine(now_ms)  # the live line's content
        use_live = is_live_terminal(out) if live is None else live
        self._live: Live | None = None
        if use_live and not self.plain:
            self._live = Live(self.status, console=out, refresh_per_second=8, transient=True)

    def __enter__(self) -> "LogView":
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Remove the live status line (the log above it stays)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, entry: LogEntry) -> None:
        self.show_page([entry])

    def show_page(self, entries: Sequence[LogEntry]) -> None:
        """Print a page of entries (one write per page: rich costs per call, not per line)."""
        if self.json_lines or self.plain:
            render = self._json if self.json_lines else self.format.plain
            self._write("".join(render(entry) + "\n" for entry in entries))
            return
        rows: list[Text] = []  # consecutive one-row lines, printed together
        for entry in entries:
            self.status.saw(entry)
            line = self._fitted(entry)
            if isinstance(line, Text):
                rows.append(line)
                continue
            self._print_rows(rows)
            self.out.print(line, soft_wrap=False, crop=False)
        self._print_rows(rows)
        if entries and entries[-1].event == "end":
            self.stop()

    def notice(self, text: str, style: str = "dim") -> None:
        """One line on stderr (dim unless ``style``): retries, hints, interruptions."""
        self.err.print(Text(text, style=style), soft_wrap=True)

    @staticmethod
    def _json(entry: LogEntry) -> str:
        return json.dumps(entry.to_record(), ensure_ascii=False)

    def _write(self, text: str) -> None:
        file = self.out.file
        file.write(text)
        file.flush()

    def _print_rows(self, rows: list[Text]) -> None:
        if rows:
            self.out.print(Text("\n").join(rows), soft_wrap=False, crop=False)
            rows.clear()

    def _fitted(self, entry: LogEntry) -> Text | Table:
        """The line as it is when it fits one row; else folded under its text column and cut after
        ``MAX_ROWS`` rows."""
        line, prefix_cells = _styled_line(self.format, entry)
        if line.cell_len <= self.out.width:
            return line
        width = max(20, self.out.width - prefix_cells)
        body = line[prefix_cells:]
        limit = width * MAX_ROWS
        if body.cell_len > limit:
            suffix = f" …[+{body.cell_len - limit} chars]"
            body.truncate(limit - len(suffix))
            body.append(suffix, style="dim")
        grid = Table.grid(padding=0)
        grid.add_column(no_wrap=True, width=prefix_cells)
        grid.add_column(overflow="fold")
        grid.add_row(line[:prefix_cells], body)
        return grid


# -- the summary at the end -----------------------------------------------------------------------


def _time_ms(value: Any) -> int | None:
    """An API time (ISO 8601) in ms since the epoch; ``None`` if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def is_running(status: Mapping[str, Any]) -> bool:
    """The build is not over: RUNNING, PENDING or redriven, and no stop time."""
    return str(status.get("status")) in statuses.RUNNING and not status.get("stopped_at")


def total_ms(status: Mapping[str, Any], now: int | None = None) -> int | None:
    """The build's wall time: started_at → stopped_at; while it runs, started_at → ``now`` (when
    given); else the stages' durations added up."""
    started, stopped = _time_ms(status.get("started_at")), _time_ms(status.get("stopped_at"))
    if started is not None and stopped is not None:
        return stopped - started
    if started is not None and now is not None and is_running(status):
        return now - started
    durations = [int_or_none(stage.get("duration_ms")) for stage in status.get("stages") or []]
    known = [duration for duration in durations if duration is not None]
    return sum(known) if known else None


def stage_ms(stage: Mapping[str, Any], status: Mapping[str, Any], now: int | None = None) -> int | None:
    """A stage's duration: its own once it ended; an interrupted stage's, from its start to the
    build's stop; a running stage's so far, from its start to ``now`` (when given)."""
    duration = int_or_none(stage.get("duration_ms"))
    started = _time_ms(stage.get("started_at"))
    if duration is not None or started is None:
        return duration
    if stage.get("status") == StageStatus.INTERRUPTED:
        stopped = _time_ms(status.get("stopped_at"))
        return None if stopped is None else stopped - started
    if stage.get("status") == StageStatus.RUNNING and now is not None and is_running(status):
        return now - started
    return None


def build_summary(
    status: Mapping[str, Any],
    *,
    lines: int | None = None,
    archive: str | None = None,
    now: Callable[[], int] = now_ms,
) -> Group:
    """The table printed when a build ends (or by ``status``): every stage, then the totals.

    ``lines``: the log's entry count when the caller knows it (else the archive's); ``archive``:
    where the log is archived (a local path), else the API's S3 URI. A build still running shows
    the time since it started (``so far``), read from ``now``.
    """
    running = is_running(status)
    clock = now() if running else None
    result = str(status.get("status") or "UNKNOWN")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("exit", justify="right")
    for stage in status.get("stages") or []:
        mark, style = _STAGE_STATUS.get(str(stage.get("status")), ("?", ""))
        exit_code = int_or_none(stage.get("exit_code"))
        table.add_row(
            Text(str(stage.get("name")), style=phase_style(str(stage.get("name")))),
            Text(f"{mark} {stage.get('status')}", style=style),
            format_duration(stage_ms(stage, status, clock)),
            "" if exit_code is None else str(exit_code),
        )
    facts: list[tuple[str, Text | str]] = []
    outcome = Text.assemble(str(status.get("build_id", "")), "  ", (result, _END_STYLES.get(result, "bold")))
    facts.append(("result", outcome))
    if status.get("error"):
        facts.append(("error", Text(str(status["error"]), style="red")))
    archived = status.get("archive") if isinstance(status.get("archive"), Mapping) else None
    if lines is None and archived is not None:
        lines = int_or_none(archived.get("lines"))
    if lines is not None:
        facts.append(("lines", str(lines)))
    elapsed = total_ms(status, clock)
    so_far = running and elapsed is not None and _time_ms(status.get("started_at")) is not None
    facts.append(("time", format_duration(elapsed) + (" so far" if so_far else "")))
    if status.get("preview_url"):
        facts.append(("preview", Text(str(status["preview_url"]), style="underline")))
    where = archive or (str(archived.get("uri")) if archived is not None else None)
    if where:
        facts.append(("archive", where))
    parts: list[RenderableType] = [Text("")]
    if table.row_count:
        parts.append(table)
    label_width = max(len(label) for label, _ in facts)
    for label, value in facts:  # whole, never wrapped: a path or URL stays copyable
        parts.append(Text.assemble((f"{label:<{label_width}}", "bold"), "  ", value, no_wrap=True, overflow="ignore"))
    return Group(*parts)

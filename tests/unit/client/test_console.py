"""Rendering a build's log: plain, coloured, NDJSON; stage ends, the failure line, the live status
line, long lines; the summary table. rich Consoles on StringIO (forced to a terminal where needed)."""

import io
import json
import re
from datetime import UTC
from typing import Any

import pytest
from rich.console import Console

from buildlogs.client.console import (
    LogView,
    build_summary,
    format_duration,
    is_live_terminal,
    is_plain,
    is_tty,
    make_console,
    total_ms,
)
from buildlogs.statuses import TERMINAL
from buildlogs.stream.entries import LogEntry
from buildlogs.stream.summary import StageStatus
from tests.support.fake_api import TS

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def e(seq: int, text: str = "", **fields: Any) -> LogEntry:
    return LogEntry.model_validate(
        {"id": f"{TS}-{seq}", "ts": TS + seq, "source": "stdout", "phase": "build", "text": text, **fields}
    )


def stage_start(seq: int, phase: str = "build") -> LogEntry:
    return e(seq, "--- Building project ---", source="system", event="stage_start", phase=phase)


def stage_end(seq: int, exit_code: int | None, duration_ms: int = 12_345, phase: str = "build") -> LogEntry:
    fields: dict[str, Any] = {"duration_ms": duration_ms}
    if exit_code is not None:
        fields["exit_code"] = exit_code
    return e(seq, f"{phase} finished", source="system", event="stage_end", phase=phase, **fields)


def terminal(width: int = 80) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=width, highlight=False)


def plain() -> Console:
    return Console(file=io.StringIO(), width=80)


def text_of(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def render(entries: list[LogEntry], console: Console, **options: Any) -> str:
    with LogView(console, plain(), live=False, **options) as view:
        view.show_page(entries)
    return text_of(console)


@pytest.fixture(autouse=True)
def _no_colour_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def test_plain_lines_carry_the_stage_and_a_marker_per_source() -> None:
    # GIVEN entries of every source (off a terminal)
    entries = [
        stage_start(0),
        e(1, "compiling"),
        e(2, "warning: slow", source="stderr"),
        e(3, "Dev server listening", source="system"),
    ]
    # WHEN they are shown
    out = render(entries, plain())
    # THEN each is one plain line: [stage] marker text — no ANSI at all
    assert out.splitlines() == [
        "[      build] # --- Building project ---",
        "[      build]   compiling",
        "[      build] ! warning: slow",
        "[      build] # Dev server listening",
    ]
    assert "\x1b" not in out


def test_timestamps_add_a_column() -> None:
    out = render([e(5, "compiling")], plain(), timestamps=True, tz=UTC)
    assert out.splitlines() == ["22:13:20.005 [      build]   compiling"]


def test_a_stage_end_shows_a_tick_its_duration_and_exit_code() -> None:
    out = render([stage_end(1, 0, duration_ms=1_234), stage_end(2, None, duration_ms=340, phase="provision")], plain())
    assert out.splitlines() == [
        "[      build] ✓ build finished · 1.2s · exit 0",
        "[  provision] ✓ provision finished · 340ms",
    ]


def test_a_failed_stage_end_shows_a_cross() -> None:
    # GIVEN a stage that exited 2, and one whose failure line came before an exit code 0
    entries = [
        stage_end(1, 2, duration_ms=65_000),
        e(2, "BUILD FAILED: healthcheck timed out", source="system", event="build_failed", phase="healthcheck"),
        stage_end(3, 0, duration_ms=5, phase="healthcheck"),
    ]
    out = render(entries, plain())
    assert out.splitlines() == [
        "[      build] ✗ build finished · 1m 05s · exit 2",
        "[healthcheck] ✗ BUILD FAILED: healthcheck timed out",
        "[healthcheck] ✗ healthcheck finished · 5ms · exit 0",
    ]


def test_on_a_terminal_the_failure_line_is_red_and_a_good_stage_end_green() -> None:
    console = terminal()
    out = render(
        [
            stage_end(1, 0),
            e(2, "BUILD FAILED: command exited with code 1", source="system", event="build_failed"),
            e(3, "warning", source="stderr"),
        ],
        console,
    )
    lines = out.splitlines()
    assert "\x1b[32m ✓ \x1b[0m\x1b[32mbuild finished · 12.3s · exit 0" in lines[0]
    assert "\x1b[1;31m ✗ \x1b[0m\x1b[1;31mBUILD FAILED: command exited with code 1\x1b[0m" in lines[1]
    assert "\x1b[31m ! \x1b[0m\x1b[31mwarning\x1b[0m" in lines[2]
    assert [ANSI.sub("", line) for line in lines] == [
        "[      build] ✓ build finished · 12.3s · exit 0",
        "[      build] ✗ BUILD FAILED: command exited with code 1",
        "[      build] ! warning",
    ]


def test_log_text_is_never_taken_for_markup_and_its_own_colours_survive_on_a_terminal() -> None:
    line = e(1, "[bold]not markup[/bold] \x1b[32mgreen\x1b[0m :smile:")
    coloured = render([line], terminal())
    assert ANSI.sub("", coloured).rstrip("\n") == "[      build]   [bold]not markup[/bold] green :smile:"
    assert "\x1b[32mgreen" in coloured
    # off a terminal the line's escape codes are dropped too (plain means no ANSI)
    assert render([line], plain()).rstrip("\n") == "[      build]   [bold]not markup[/bold] green :smile:"


def test_json_prints_the_archive_records_and_nothing_else() -> None:
    # GIVEN entries with extras, on a terminal even
    entries = [
        stage_start(0),
        e(1, "x" * 500),
        stage_end(2, 1),
        e(3, "end", source="system", event="end", status="FAILED"),
    ]
    console = terminal(width=40)
    # WHEN shown as JSON
    out = render(entries, console, json_lines=True, timestamps=True)
    # THEN stdout holds one archive record per entry, whole (no folding, no colour, no timestamps column)
    assert [json.loads(line) for line in out.splitlines()] == [entry.to_record() for entry in entries]
    assert json.loads(out.splitlines()[2]) == {
        "id": f"{TS}-2",
        "ts": TS + 2,
        "source": "system",
        "text": "build finished",
        "phase": "build",
        "event": "stage_end",
        "duration_ms": 12_345,
        "exit_code": 1,
    }


def test_a_long_line_is_folded_under_its_text_and_cut_on_a_terminal() -> None:
    # GIVEN a 2,000-character line and a 60-column terminal
    console = terminal(width=60)
    out = ANSI.sub("", render([e(1, "y" * 2_000)], console))
    rows = out.splitlines()
    # THEN it is folded into rows under the text column (not under the stage), at most 8 rows of text
    assert rows[0].startswith("[      build]   yyy")
    assert all(row.startswith(" " * 16 + "y") or "…[+" in row for row in rows[1:])
    assert all(len(row.rstrip()) <= 60 for row in rows)
    assert len(rows) <= 9
    # AND it says how much was cut
    shown = out.count("y")
    assert f"…[+{2_000 - (60 - 16) * 8} chars]" in out.replace("\n", "").replace(" " * 16, "")
    assert shown < 2_000


def test_a_long_line_stays_whole_off_a_terminal() -> None:
    out = render([e(1, "z" * 2_000)], plain())
    assert out == "[      build]   " + "z" * 2_000 + "\n"


def test_no_color_means_plain_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert is_plain(console)
    assert not is_live_terminal(console)
    assert render([e(1, "warning", source="stderr")], console) == "[      build] ! warning\n"


def test_force_color_colours_a_pipe_but_gives_it_no_live_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    console = make_console(io.StringIO())
    assert not is_plain(console)
    assert not is_live_terminal(console)  # a StringIO is no TTY
    with LogView(console, plain()) as view:
        view.show(e(1, "warning", source="stderr"))
    out = text_of(console)
    assert "\x1b[31m ! \x1b[0m" in out
    assert "\x1b[?25l" not in out  # no cursor hiding: no live display


class _Now:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_the_live_status_line_shows_the_running_stage_its_time_and_lines() -> None:
    # GIVEN a live view on a (forced) interactive terminal, and a clock 2.5 s after the stage started
    console = Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=80)
    now = _Now(TS + 2_500)
    with LogView(console, plain(), live=True, now_ms=now) as view:
        view.show_page([stage_start(0), e(1, "one"), e(2, "two", source="stderr")])
        # WHEN the status line renders
        status = view.status.text().plain
        # THEN it names the stage and its label, its elapsed time and its lines so far
        assert status == "build Building project · 2.5s · 2 lines"
        now.ms += 60_000
        assert view.status.text().plain == "build Building project · 1m 02s · 2 lines"
        # AND a stage end leaves it waiting for the next stage
        view.show(stage_end(3, 0))
        assert view.status.text().plain == "waiting for the next stage · 4 lines"
        view.show(e(4, "end of log: SUCCEEDED", source="system", event="end", status="SUCCEEDED"))
    out = text_of(console)
    # the live line was drawn (cursor hidden, then restored) and the log lines are all there
    assert "\x1b[?25l" in out
    assert "\x1b[?25h" in out
    for text in ("one", "two", "build finished", "end of log: SUCCEEDED"):
        assert text in ANSI.sub("", out)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0, "0ms"),
        (999, "999ms"),
        (1_000, "1.0s"),
        (59_949, "59.9s"),
        (65_000, "1m 05s"),
        (3_723_000, "1h 02m"),
    ],
)
def test_durations(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text


STATUS = {
    "build_id": "b1",
    "status": "FAILED",
    "started_at": "2023-11-14T22:13:20+00:00",
    "stopped_at": "2023-11-14T22:14:25.500000+00:00",
    "error": "CommandFailed",
    "stages": [
        {"name": "provision", "status": "succeeded", "duration_ms": 400, "exit_code": None},
        {"name": "install", "status": "succeeded", "duration_ms": 61_000, "exit_code": 0},
        {"name": "build", "status": "failed", "duration_ms": 3_100, "exit_code": 2},
        {"name": "cleanup", "status": "running", "duration_ms": None, "exit_code": None},
    ],
    "preview_url": "https://3000-sbx.e2b.app",
    "archive": {
        "bucket": "b",
        "key": "build-logs/b1/build.jsonl",
        "uri": "s3://b/build-logs/b1/build.jsonl",
        "lines": 42,
    },
}


def _summary(status: dict[str, Any], **options: Any) -> list[str]:
    console = plain()
    console.print(build_summary(status, **options), crop=False)
    return [line.rstrip() for line in text_of(console).splitlines()]


def test_the_summary_lists_every_stage_and_the_totals() -> None:
    lines = _summary(STATUS)
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert ["provision", "✓ succeeded", "400ms"] in rows
    assert ["install", "✓ succeeded", "1m 01s", "0"] in rows
    assert ["build", "✗ failed", "3.1s", "2"] in rows
    assert ["cleanup", "… running", "-"] in rows
    assert ["result", "b1", "FAILED"] in rows
    assert ["error", "CommandFailed"] in rows
    assert ["lines", "42"] in rows  # the archive's count
    assert ["time", "1m 05s"] in rows  # started_at → stopped_at
    assert ["preview", "https://3000-sbx.e2b.app"] in rows
    assert ["archive", "s3://b/build-logs/b1/build.jsonl"] in rows


def test_the_summary_prefers_the_lines_followed_and_a_local_archive_path() -> None:
    path = "/a/long/path/" + "d" * 100 + "/.buildlogs/archive/build-logs/b1/build.jsonl"
    status = {**STATUS, "started_at": None, "preview_url": None}
    lines = _summary(status, lines=7, archive=path)
    assert "lines    7" in lines
    assert f"archive  {path}" in lines  # whole, even past the 80 columns: a path stays copyable
    assert "time     1m 04s" in lines  # no start: the stages' durations added up
    assert not any(line.startswith("preview") for line in lines)


def _rows(status: dict[str, Any], **options: Any) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in _summary(status, **options)]


ABORTED = {
    "build_id": "b1",
    "status": "ABORTED",
    "started_at": "2023-11-14T22:13:20+00:00",
    "stopped_at": "2023-11-14T22:13:50+00:00",
    "stages": [
        {"name": "install", "status": "succeeded", "started_at": "2023-11-14T22:13:20+00:00", "duration_ms": 10_000},
        {"name": "build", "status": "interrupted", "started_at": "2023-11-14T22:13:30.500000+00:00"},
    ],
}


@pytest.mark.parametrize("result", ["ABORTED", "TIMED_OUT"])
def test_the_stage_a_killed_build_stopped_in_reads_interrupted_with_its_time_until_the_stop(result: str) -> None:
    # GIVEN an aborted (or timed-out) build whose build stage never ended: the API says interrupted
    status = {**ABORTED, "status": result}
    # WHEN its summary is printed
    rows = _rows(status)
    # THEN that stage is interrupted, not failed, and ran from its start to the build's stop
    assert ["build", "■ interrupted", "19.5s"] in rows
    assert ["install", "✓ succeeded", "10.0s"] in rows
    assert ["result", "b1", result] in rows
    assert ["time", "30.0s"] in rows


def test_a_running_build_shows_its_time_so_far_and_its_running_stage_s() -> None:
    # GIVEN a build running for 2 minutes, in a build stage started 45 s ago; one stage done in 26 ms
    start_ms = 1_700_000_000_000
    status = {
        "build_id": "b1",
        "status": "RUNNING",
        "started_at": "2023-11-14T22:13:20+00:00",  # start_ms
        "stopped_at": None,
        "stages": [
            {"name": "provision", "status": "succeeded", "duration_ms": 26},
            {"name": "build", "status": "running", "started_at": "2023-11-14T22:14:35+00:00"},
        ],
    }
    # WHEN its summary is printed at start + 2 min
    rows = _rows(status, now=lambda: start_ms + 120_000)
    # THEN the time is the time since it started, not the finished stages' 26 ms
    assert ["time", "2m 00s so far"] in rows
    assert ["build", "… running", "45.0s"] in rows
    assert ["provision", "✓ succeeded", "26ms"] in rows


def test_a_pending_build_has_no_time_yet() -> None:
    status = {"build_id": "b1", "status": "PENDING", "started_at": None, "stopped_at": None, "stages": []}
    assert ["time", "-"] in _rows(status, now=lambda: 1_700_000_000_000)


def test_total_ms_reads_the_clock_only_for_a_build_still_running() -> None:
    running = {"status": "RUNNING", "started_at": "2023-11-14T22:13:20Z", "stages": [{"duration_ms": 26}]}
    assert total_ms(running, now=1_700_000_005_000) == 5_000
    assert total_ms(running) == 26  # no clock: the stages' durations
    assert total_ms({**running, "status": "SUCCEEDED"}, now=1_700_000_005_000) == 26  # over, no stop time


@pytest.mark.parametrize("stage_status", list(StageStatus))
def test_every_stage_status_has_its_mark(stage_status: StageStatus) -> None:
    status = {"build_id": "b1", "status": "RUNNING", "stages": [{"name": "build", "status": stage_status.value}]}
    (row,) = [row for row in _rows(status) if row[0] == "build"]
    assert row[1][0] != "?"
    assert row[1][2:] == stage_status.value


@pytest.mark.parametrize("result", [status.value for status in TERMINAL])
def test_every_result_has_its_own_colour_on_a_terminal(result: str) -> None:
    console = terminal()
    console.print(build_summary({"build_id": "b1", "status": result, "stages": []}), crop=False)
    (line,) = [line for line in text_of(console).splitlines() if "result" in line]
    assert re.search(r"\x1b\[1;3[1-3]m" + result, line), line  # bold red, green or yellow; not just bold


def test_is_tty_is_the_file_s_own_answer_whatever_rich_is_told() -> None:
    assert not is_tty(terminal())  # forced to a terminal, but a StringIO

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert is_tty(Console(file=Tty()))

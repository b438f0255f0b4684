"""Terminal rendering of log entries: coloured by source and phase (the demo and the CLI tail)."""

import os
import sys
from typing import TextIO

from buildlogs.stream.entries import LogEntry

RESET = "\033[0m"
_SOURCE_STYLE = {"stdout": "", "stderr": "\033[31m", "system": "\033[1;36m"}
_PHASE_COLOURS = ("\033[35m", "\033[34m", "\033[33m", "\033[32m", "\033[36m", "\033[95m", "\033[94m")


def use_colour(stream: TextIO = sys.stdout) -> bool:
    """Colour on a terminal unless NO_COLOR is set; FORCE_COLOR forces it."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def _phase_colour(phase: str) -> str:
    return _PHASE_COLOURS[sum(phase.encode()) % len(_PHASE_COLOURS)]


def format_entry(entry: LogEntry, colour: bool = True) -> str:
    """One line: ``[phase] text``, stderr marked, system entries highlighted."""
    marker = {"stderr": "!", "system": "#"}.get(entry.source, " ")
    if not colour:
        return f"[{entry.phase:>11}] {marker} {entry.text}"
    style = _SOURCE_STYLE.get(entry.source, "")
    return f"{_phase_colour(entry.phase)}[{entry.phase:>11}]{RESET} {style}{marker} {entry.text}{RESET}"

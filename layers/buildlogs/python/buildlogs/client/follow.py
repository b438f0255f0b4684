"""Following a build's log: long-polled pages → entries, until the log ends.

Shared by ``tail``, ``submit --follow`` and ``run``. The cursor only moves past a page once the
page was received, and the client retries a failed page on the same cursor: no gap, no duplicate.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from buildlogs.client.http import LONG_POLL_SECONDS, ApiClient
from buildlogs.statuses import ExecutionStatus
from buildlogs.stream.entries import LogEntry

# The exit code of each result (the statuses an execution ends with: statuses.TERMINAL).
EXIT_CODES: dict[str, int] = {
    ExecutionStatus.SUCCEEDED.value: 0,
    ExecutionStatus.FAILED.value: 1,
    ExecutionStatus.TIMED_OUT.value: 2,
    ExecutionStatus.ABORTED.value: 2,
}
EXIT_API_ERROR = 3
EXIT_INTERRUPTED = 130

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_DURATION = re.compile(r"^(?:\d+(?:ms|[smhd]))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|[smhd])")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MAX_SEQ = 2**64 - 1


def exit_code_for(status: str) -> int:
    """The process exit code of a build's status (anything unknown counts as a failure)."""
    return EXIT_CODES.get(status, EXIT_CODES[ExecutionStatus.FAILED])


def cursor_since(since: str, now: Callable[[], float] | None = None) -> str:
    """The ``after`` cursor of ``--since``: an entry id (entries after it), or a duration such as
    ``90s``, ``10m``, ``1h30m`` (entries written at or after that long ago). ``ValueError`` otherwise."""
    since = since.strip()
    if _ENTRY_ID.fullmatch(since):
        return since
    if not _DURATION.fullmatch(since):
        raise ValueError(f"{since!r} is neither a duration (10m, 1h30m, 45s) nor an entry id (1700000000000-0)")
    span_ms = sum(int(count) * _UNIT_MS[unit] for count, unit in _DURATION_PART.findall(since))
    start_ms = int((now or time.time)() * 1000) - span_ms
    # Entry ids are "<ms>-<seq>": the last possible id of the millisecond before the start.
    return f"{start_ms - 1}-{_MAX_SEQ}" if start_ms > 0 else "0-0"


@dataclass
class Follower:
    """Yields a build's log entries until the log is done (the ``end`` entry, or the filtered page
    that says ``done``). ``status`` is the ``end`` entry's status once seen; ``cursor`` the last id."""

    client: ApiClient
    build_id: str
    after: str = "0-0"
    phase: str | None = None
    source: str | None = None
    wait: int = LONG_POLL_SECONDS
    status: str | None = field(default=None, init=False)
    count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.cursor = self.after
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Send no further request (a page in flight still completes)."""
        self._stopped.set()

    def pages(self) -> Iterator[list[LogEntry]]:
        """Each non-empty page of entries, in order, until the log is done."""
        while not self._stopped.is_set():
            page = self.client.logs(self.build_id, self.cursor, wait=self.wait, phase=self.phase, source=self.source)
            entries = [LogEntry.model_validate(raw) for raw in page["entries"]]
            for entry in entries:
                if entry.event == "end":
                    self.status = str(getattr(entry, "status", "") or "") or None
            self.count += len(entries)
            self.cursor = str(page["next"])
            if entries and not self._stopped.is_set():
                yield entries
            if page["done"]:
                return

    def entries(self) -> Iterator[LogEntry]:
        for page in self.pages():
            yield from page

"""Watching a project for saved changes (``buildlogs run --watch``): poll, then debounce.

Polling (the project's files are read, as a build would send them) needs no platform watcher
and sees exactly what the next build sends. A change is reported once the project has stayed
the same for ``quiet`` seconds (an editor's save is often several writes); a project that cannot
be read right now (a half-written buildspec.json) is waited out, and reported once.
"""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.25
QUIET_S = 0.4


class ProjectWatcher(Generic[T]):
    """``next_change(current)`` blocks until ``load()`` gives something else, stable for ``quiet`` seconds."""

    def __init__(
        self,
        load: Callable[[], T],
        *,
        on_error: Callable[[Exception], None] | None = None,
        interval: float = POLL_INTERVAL_S,
        quiet: float = QUIET_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._on_error = load, on_error
        self._interval, self._quiet = interval, quiet
        self._sleep, self._clock = sleep, clock

    def _read(self, reported: list[str]) -> tuple[bool, T | None]:
        try:
            return True, self._load()
        except (ValueError, OSError) as exc:
            if self._on_error is not None and str(exc) not in reported:
                reported.append(str(exc))
                self._on_error(exc)
            return False, None

    def next_change(self, current: T) -> T:
        reported: list[str] = []
        candidate: T | None = None
        since = 0.0
        while True:
            self._sleep(self._interval)
            ok, value = self._read(reported)
            if not ok or value == current:
                candidate = None
                continue
            if candidate is None or value != candidate:
                candidate, since = value, self._clock()
                continue
            if self._clock() - since >= self._quiet:
                return candidate

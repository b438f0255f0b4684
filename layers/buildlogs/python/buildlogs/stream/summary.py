"""A log's stage summary (status, start, duration per stage; preview URL), folded from its entries.

GET /builds/{id} shows it: from the live stream (cached incrementally in Redis) or from the archive index.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from buildlogs.statuses import UNCAUGHT

STAGE_EVENTS = frozenset({"stage_start", "stage_end", "build_failed"})


class StageStatus(StrEnum):
    """A stage's status as its log tells it (stages[].status of GET /builds/{id})."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Never ended: the build was aborted or timed out in it, or ended without its stage_end.
    INTERRUPTED = "interrupted"
    # Nothing to do (an iteration's Install with no manifest changed): stage_end says skipped.
    SKIPPED = "skipped"


@dataclass(slots=True)
class StageSummary:
    """One stage as the log tells it: status, start (ms since epoch) and duration."""

    name: str
    status: StageStatus = StageStatus.RUNNING
    started_ms: int | None = None
    duration_ms: int | None = None
    exit_code: int | None = None


@dataclass(slots=True)
class LogSummary:
    """What GET /builds/{id} reads from the log: its stages and the dev server's preview URL."""

    stages: list[StageSummary]
    preview_url: str | None = None
    source: str = "none"  # stream | archive | none


class Summariser:
    """Folds a log's system entries into its stage summary; its state round-trips through JSON."""

    def __init__(self) -> None:
        self.stages: dict[str, StageSummary] = {}
        self.preview_url: str | None = None

    def feed(self, record: dict[str, Any]) -> None:
        if record.get("source") != "system":
            return
        if record.get("preview_url"):  # the start stage's "Dev server listening" entry carries it
            self.preview_url = str(record["preview_url"])
        event, phase = record.get("event"), str(record.get("phase") or "")
        if event not in STAGE_EVENTS or not phase:
            return
        if event == "build_failed" and record.get("status") in UNCAUGHT:
            # The archiver's "BUILD ABORTED" / "BUILD TIMED_OUT" of a run killed from outside: the
            # stage running then did not fail, it was interrupted (a stage already over keeps its end).
            killed = self.stages.get(phase)
            if killed is not None and killed.status == StageStatus.RUNNING:
                killed.status = StageStatus.INTERRUPTED
            return
        stage = self.stages.setdefault(phase, StageSummary(phase))
        if event == "stage_start":
            stage.status, stage.started_ms = StageStatus.RUNNING, int_or_none(record.get("ts"))
        elif event == "stage_end":
            stage.duration_ms = int_or_none(record.get("duration_ms"))
            stage.exit_code = int_or_none(record.get("exit_code"))
            if stage.status not in (StageStatus.FAILED, StageStatus.INTERRUPTED):
                stage.status = StageStatus.SUCCEEDED if stage.exit_code in (None, 0) else StageStatus.FAILED
                if stage.status == StageStatus.SUCCEEDED and str(record.get("skipped")).lower() == "true":
                    stage.status = StageStatus.SKIPPED
        else:
            stage.status = StageStatus.FAILED

    def result(self, finished: bool, source: str) -> LogSummary:
        stages = [
            StageSummary(s.name, s.status, s.started_ms, s.duration_ms, s.exit_code) for s in self.stages.values()
        ]
        if finished:
            for stage in stages:
                if stage.status == StageStatus.RUNNING:
                    stage.status = StageStatus.INTERRUPTED
        return LogSummary(stages, self.preview_url, source)

    def state(self) -> dict[str, Any]:
        """The summary so far (``finished`` not applied), as plain JSON."""
        stages = [
            {
                "name": s.name,
                "status": s.status.value,
                "started_ms": s.started_ms,
                "duration_ms": s.duration_ms,
                "exit_code": s.exit_code,
            }
            for s in self.stages.values()
        ]
        return {"stages": stages, "preview_url": self.preview_url}

    @classmethod
    def from_state(cls, state: Any) -> "Summariser":
        """The inverse of :meth:`state`; ``ValueError`` if ``state`` is not one."""
        if not isinstance(state, dict) or not isinstance(state.get("stages"), list):
            raise ValueError("not a summary state")
        summariser = cls()
        for item in state["stages"]:
            stage = StageSummary(
                name=str(item["name"]),
                status=StageStatus(item["status"]),
                started_ms=int_or_none(item.get("started_ms")),
                duration_ms=int_or_none(item.get("duration_ms")),
                exit_code=int_or_none(item.get("exit_code")),
            )
            summariser.stages[stage.name] = stage
        preview_url = state.get("preview_url")
        summariser.preview_url = str(preview_url) if preview_url else None
        return summariser


def feed_all(summariser: Summariser, records: Iterable[dict[str, Any]]) -> Summariser:
    for record in records:
        summariser.feed(record)
    return summariser


def int_or_none(value: Any) -> int | None:
    """``value`` as an int (an entry's ``ts``, ``duration_ms``, ``exit_code``), ``None`` if it is none."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

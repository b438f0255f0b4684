"""The sweep's ListExecutions paging: the window, every terminal status, stopping when older."""

from datetime import UTC, datetime, timedelta
from typing import Any

from buildlogs.archive.sweep import MAX_RUN, list_finished_executions

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:BuildPipeline"
NOW = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=120)


class PagedSfn:
    """ListExecutions over fixed executions, newest start first, pages of two; records calls."""

    def __init__(self, executions: list[dict[str, Any]]) -> None:
        self.executions = sorted(executions, key=lambda e: e["startDate"], reverse=True)
        self.calls: list[dict[str, Any]] = []

    def list_executions(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        assert kwargs["stateMachineArn"] == ARN
        matching = [e for e in self.executions if e["status"] == kwargs["statusFilter"]]
        start = int(kwargs.get("nextToken", 0))
        page: dict[str, Any] = {"executions": matching[start : start + 2]}
        if start + 2 < len(matching):
            page["nextToken"] = str(start + 2)
        return page


def execution(name: str, status: str, started_min_ago: float, ran_min: float | None) -> dict[str, Any]:
    start = NOW - timedelta(minutes=started_min_ago)
    record = {"name": name, "status": status, "startDate": start, "executionArn": f"{ARN}:{name}"}
    if ran_min is not None:
        record["stopDate"] = start + timedelta(minutes=ran_min)
    return record


def test_lists_exactly_the_executions_that_ended_in_the_window() -> None:
    # GIVEN executions of every status, some ended inside the window, some before it
    sfn = PagedSfn(
        [
            execution("ok-recent", "SUCCEEDED", 10, 5),
            execution("failed-recent", "FAILED", 30, 2),
            execution("timed-out-recent", "TIMED_OUT", 90, 60),
            execution("aborted-recent", "ABORTED", 5, 1),
            execution("long-run", "SUCCEEDED", 150, 40),  # started before the window, ended in it
            execution("ok-old", "SUCCEEDED", 200, 5),  # ended before the window
            execution("failed-old", "FAILED", 130, 1),
            execution("timed-out-no-stop-date", "TIMED_OUT", 20, None),
            execution("running", "RUNNING", 3, None),
        ]
    )

    # WHEN the sweep lists finished executions
    found = list_finished_executions(sfn, ARN, SINCE)

    # THEN exactly the ones that ended at or after the window's start, with their statuses
    assert sorted((e.name, e.status) for e in found) == [
        ("aborted-recent", "ABORTED"),
        ("failed-recent", "FAILED"),
        ("long-run", "SUCCEEDED"),
        ("ok-recent", "SUCCEEDED"),
        ("timed-out-no-stop-date", "TIMED_OUT"),
        ("timed-out-recent", "TIMED_OUT"),
    ]
    assert {call["statusFilter"] for call in sfn.calls} == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def test_paging_stops_at_executions_too_old_to_have_ended_in_the_window() -> None:
    # GIVEN many succeeded executions, most of them started long before the window
    recent = [execution(f"new-{i}", "SUCCEEDED", 10 + i, 1) for i in range(3)]
    old_start = (NOW - SINCE + MAX_RUN).total_seconds() / 60 + 1
    old = [execution(f"old-{i}", "SUCCEEDED", old_start + i, 1) for i in range(50)]
    sfn = PagedSfn(recent + old)

    # WHEN the sweep lists them
    found = list_finished_executions(sfn, ARN, SINCE)

    # THEN it finds the recent ones and stops paging at the first too-old page
    assert sorted(e.name for e in found) == ["new-0", "new-1", "new-2"]
    succeeded_calls = [call for call in sfn.calls if call["statusFilter"] == "SUCCEEDED"]
    assert len(succeeded_calls) == 2  # 26 pages exist
    assert succeeded_calls[1]["nextToken"] == "2"

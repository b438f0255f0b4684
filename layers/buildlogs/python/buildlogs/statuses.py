"""Execution statuses as Step Functions reports them: the one place that lists them."""

from enum import StrEnum
from typing import TypeAlias


class ExecutionStatus(StrEnum):
    """A Step Functions execution's status (``DescribeExecution``, the status-change event)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


# The API's own status of a build whose spec is stored but that has no execution (yet).
PENDING = "PENDING"
# The end of a run: what the EventBridge rule matches and the archiver accepts, in that order.
TERMINAL: tuple[ExecutionStatus, ...] = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.TIMED_OUT,
    ExecutionStatus.ABORTED,
)
# A build that is not over (a redrive makes a FAILED run run again; PENDING has not started).
RUNNING: frozenset[str] = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.PENDING_REDRIVE, PENDING})
# Runs that ended without the state machine's own Catch: nobody cleaned their sandbox up.
UNCAUGHT: frozenset[str] = frozenset({ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED})


class ApiStatus(StrEnum):
    """The API's own status of a build, besides its execution's: PENDING, stored but not started."""

    PENDING = PENDING


# A build's status as GET /builds/{id} reports it: its execution's, or PENDING before it has one.
BuildStatusValue: TypeAlias = ExecutionStatus | ApiStatus


def build_status(value: str) -> BuildStatusValue:
    """``value`` as a :data:`BuildStatusValue`; ``ValueError`` if it is no status of a build."""
    return ApiStatus(value) if value == ApiStatus.PENDING else ExecutionStatus(value)

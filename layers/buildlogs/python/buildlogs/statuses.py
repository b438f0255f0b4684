"""Execution statuses as Step Functions reports them: the one place that lists them."""

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """A Step Functions execution's status (``DescribeExecution``, the status-change event)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"
    PENDING = "PENDING"  # the API's own: the spec is stored, Step Functions has no execution (yet)


# The end of a run: what the EventBridge rule matches and the archiver accepts, in that order.
TERMINAL: tuple[ExecutionStatus, ...] = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.TIMED_OUT,
    ExecutionStatus.ABORTED,
)
# Statuses of a run that is not over (a redrive makes a FAILED run run again).
RUNNING: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.RUNNING, ExecutionStatus.PENDING, ExecutionStatus.PENDING_REDRIVE}
)
# Runs that ended without the state machine's own Catch: nobody cleaned their sandbox up.
UNCAUGHT: frozenset[ExecutionStatus] = frozenset({ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED})

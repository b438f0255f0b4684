"""Archiver Lambda: a terminal Step Functions status event archives that build's log; a
scheduled event sweeps recently ended executions for builds still missing their archive.

Thin on purpose: Powertools decorators, then ``buildlogs.archive.service.handle`` (dispatch,
filtering, clients and error classification live there). A transient Redis/S3 error raises
(async invoke retries, then the DLQ); a permanent problem returns with a warning. Never imports e2b.
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from buildlogs.archive.service import handle
from buildlogs.observability import logger, metrics, tracer


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    """The archiver's entry point (EventBridge rule on terminal statuses, and the sweep schedule)."""
    return handle(event)

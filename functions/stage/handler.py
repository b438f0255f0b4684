"""The stage Lambda: one handler for every build stage; the stage comes from the function's STAGE.

Thin on purpose: Powertools decorators, then ``buildlogs.pipeline.runner.run_stage`` on a fresh event
loop (a Redis client is made per invocation: it belongs to the loop that created it). e2b is
imported only when an E2B sandbox is created.
"""

import asyncio
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from buildlogs.observability import logger, metrics, tracer
from buildlogs.pipeline.runner import run_stage
from buildlogs.settings import get_settings


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run this function's stage for the execution state ``event``; return the next state's input."""
    settings = get_settings()
    return asyncio.run(run_stage(settings.stage, event, settings=settings))

"""API Lambda: API Gateway REST proxy events into the Powertools resolver of ``buildlogs.api``.

Thin on purpose: routes and their logic live in the layer. Never imports e2b. The event is
never logged (a POST /builds body holds secret env values).
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from buildlogs.api.app import app
from buildlogs.observability import logger, metrics, tracer


@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The API's entry point."""
    return app.resolve(event, context)

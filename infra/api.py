"""The REST API: IAM auth on every method, request validation, access logs, throttling, one Lambda.

The routes are the resolver's own (``buildlogs.api.app``), read from its generated OpenAPI
document at synth time, plus GET /openapi.json: a route added to the app gets its API Gateway
method, path and query parameters with no second list to keep in step. All are proxied to the
API function (Powertools resolver).
"""

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from buildlogs.api.app import openapi_json
from infra.common import Network, python_function, retention_days
from infra.config import StackSettings
from infra.constants import (
    API_FUNCTION,
    ARCHIVE_PREFIX,
    ENV_EXECUTION_TIMEOUT_SECONDS,
    ENV_LOG_ARCHIVE_BUCKET,
    ENV_SOURCES_BUCKET,
    ENV_STATE_MACHINE_ARN,
    SOURCES_PREFIX,
)
from infra.iam import execution_arn, list_prefixes

API_TIMEOUT_SECONDS = 30  # API Gateway's integration timeout is 29 s; long polls wait at most 20 s
OPENAPI_PATH = "/openapi.json"  # served by the resolver, left out of its own document


@dataclass(frozen=True, slots=True)
class Route:
    """One API Gateway method: its path (``{name}`` path parameters) and declared parameters."""

    method: str
    path: str
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    header_params: tuple[str, ...] = ()

    def request_parameters(self) -> dict[str, bool]:
        """API Gateway's ``RequestParameters``: path parameters required, the rest optional."""
        parameters = {f"method.request.path.{name}": True for name in self.path_params}
        parameters |= {f"method.request.querystring.{name}": False for name in self.query_params}
        parameters |= {f"method.request.header.{name}": False for name in self.header_params}
        return parameters


@cache
def api_routes() -> tuple[Route, ...]:
    """Every route of the API, from the resolver's OpenAPI document (one source of truth)."""
    document = json.loads(openapi_json())
    routes = [Route("GET", OPENAPI_PATH)]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])

            def named(location: str, parameters: list[dict[str, str]] = parameters) -> tuple[str, ...]:
                return tuple(p["name"] for p in parameters if p["in"] == location)

            routes.append(Route(method.upper(), path, named("path"), named("query"), named("header")))
    return tuple(sorted(routes, key=lambda route: (route.path, route.method)))


# API Gateway's own responses (it answers before the Lambda runs: IAM, validation, throttling,
# timeouts) as (response type, status or None to keep API Gateway's, error, fixed message or None).
# The error codes are the Lambda's for the same situation (buildlogs.api.app: invalid_request,
# payload_too_large, not_found, internal_error; otherwise the HTTP phrase, as its ServiceError
# handler). A gateway response template is not VTL: API Gateway only substitutes variables, so
# $util.escapeJavaScript is not available there. The message is therefore fixed, or
# $context.error.messageString: the one variable API Gateway substitutes as a quoted JSON string
# (its default templates are {"message":$context.error.messageString}); the raw
# $context.error.validationErrorString holds quotes and would break the JSON.
GATEWAY_MESSAGE = "$context.error.messageString"
GATEWAY_RESPONSES: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("BAD_REQUEST_BODY", "400", "invalid_request", "the request body must be a JSON object"),
    ("BAD_REQUEST_PARAMETERS", "400", "invalid_request", "a required request parameter is missing"),
    ("REQUEST_TOO_LARGE", "413", "payload_too_large", "the request body is too large"),
    # With IAM auth API Gateway answers this for an unsigned request and for an unknown route alike.
    (
        "MISSING_AUTHENTICATION_TOKEN",
        "403",
        "forbidden",
        "the request is not signed (SigV4 for execute-api) or there is no such route",
    ),
    ("ACCESS_DENIED", "403", "forbidden", None),  # IAM denied: API Gateway's message names the action
    ("INVALID_SIGNATURE", "403", "forbidden", None),
    ("EXPIRED_TOKEN", "403", "forbidden", None),
    ("RESOURCE_NOT_FOUND", "404", "not_found", "no such route"),
    ("THROTTLED", "429", "too_many_requests", "too many requests; retry with backoff"),
    ("QUOTA_EXCEEDED", "429", "too_many_requests", "request quota exceeded; retry later"),
    ("INTEGRATION_TIMEOUT", "504", "gateway_timeout", "the API did not answer in time; retry"),
    ("DEFAULT_4XX", None, "client_error", None),
    ("DEFAULT_5XX", None, "internal_error", None),
)


def gateway_template(error: str, message: str | None) -> str:
    """A gateway response body: JSON ``{error, message}`` once API Gateway substitutes its variables."""
    for text in (error, message or ""):
        if "$" in text:
            raise ValueError(f"a fixed gateway message must not hold a variable: {text!r}")
    rendered_message = json.dumps(message) if message is not None else GATEWAY_MESSAGE
    return f'{{"error": {json.dumps(error)}, "message": {rendered_message}}}'


class Api(Construct):
    """``function`` (the API handler) and ``rest_api`` (``url`` is the stage's invoke URL)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        layer: lambda_.ILayerVersion,
        network: Network,
        bucket: s3.IBucket,
        state_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._bucket = bucket
        self._state_machine = state_machine
        self.function = self._build_function(layer, network)
        self.rest_api = self._build_rest_api()
        self._build_routes()

    def _build_function(self, layer: lambda_.ILayerVersion, network: Network) -> lambda_.Function:
        function = python_function(
            self,
            "Handler",
            code_dir=API_FUNCTION,
            description="buildlogs REST API: start builds, status, live and archived logs, cancel",
            timeout_seconds=API_TIMEOUT_SECONDS,
            memory_mb=1024,
            layer=layer,
            network=network,
            settings=self._settings,
            environment={
                ENV_STATE_MACHINE_ARN: self._state_machine.state_machine_arn,
                ENV_SOURCES_BUCKET: self._bucket.bucket_name,
                # The iteration lease outlives any execution (the state machine's timeout).
                ENV_EXECUTION_TIMEOUT_SECONDS: str(self._settings.execution_timeout_minutes * 60),
                ENV_LOG_ARCHIVE_BUCKET: self._bucket.bucket_name if self._settings.archive_enabled else "",
            },
        )
        self._grant(function)
        return function

    def _grant(self, function: lambda_.Function) -> None:
        machine = self._state_machine.state_machine_arn
        executions = execution_arn(self, self._state_machine)
        statements = [
            iam.PolicyStatement(actions=["states:StartExecution", "states:ListExecutions"], resources=[machine]),
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[executions],
            ),
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"], resources=[self._bucket.arn_for_objects(f"{SOURCES_PREFIX}*")]
            ),
        ]
        readable = [SOURCES_PREFIX]
        if self._settings.archive_enabled:  # logs of an expired stream are served from the archive
            readable.append(ARCHIVE_PREFIX)
            statements.append(
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[self._bucket.arn_for_objects(f"{ARCHIVE_PREFIX}*")]
                )
            )
        # a missing spec or archive must be a 404 (unknown build / expired log), not a 403
        statements.append(list_prefixes(self._bucket, *readable))
        for statement in statements:
            function.add_to_role_policy(statement)

    def _build_rest_api(self) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention_days(self._settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        api = apigw.RestApi(
            self,
            "RestApi",
            description="buildlogs: start builds and follow their logs live",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # execution logging needs the account's API Gateway CloudWatch role
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,  # account-wide setting: keep it
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=self._settings.env_name,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies hold BuildSpec env values (secrets)
                tracing_enabled=True,
                throttling_rate_limit=self._settings.api_throttle_rate,
                throttling_burst_limit=self._settings.api_throttle_burst,
            ),
        )
        self._add_gateway_responses(api)
        return api

    @staticmethod
    def _add_gateway_responses(api: apigw.RestApi) -> None:
        """API Gateway's own errors (auth, validation, throttling, timeouts) in the API's ``{error, message}``."""
        for response_type, status, error, message in GATEWAY_RESPONSES:
            api.add_gateway_response(
                "".join(word.capitalize() for word in response_type.split("_")),
                type=apigw.ResponseType.of(response_type),
                status_code=status,
                templates={"application/json": gateway_template(error, message)},
            )

    def _build_routes(self) -> None:
        api = self.rest_api
        integration = apigw.LambdaIntegration(self.function, proxy=True)
        validator = api.add_request_validator("Validator", validate_request_body=True, validate_request_parameters=True)
        json_object = api.add_model(
            "JsonObject",
            content_type="application/json",
            description="Any JSON object (the API validates the BuildSpec itself)",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
        )
        for route in api_routes():
            options: dict[str, Any] = {"request_validator": validator}
            if route.request_parameters():
                options["request_parameters"] = route.request_parameters()
            if route.method == "POST" and not route.path_params:  # POST /builds: a JSON body
                options["request_models"] = {"application/json": json_object}
            api.root.resource_for_path(route.path).add_method(route.method, integration, **options)

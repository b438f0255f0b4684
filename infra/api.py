"""The REST API: IAM auth on every method, request validation, access logs, throttling, one Lambda.

Routes: POST /builds, GET /builds, GET /builds/{id}, GET /builds/{id}/logs, POST /builds/{id}/cancel,
GET /openapi.json — all proxied to the API function (Powertools resolver).
"""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.common import Network, python_function, retention_days
from infra.config import StackSettings
from infra.constants import (
    API_FUNCTION,
    ARCHIVE_PREFIX,
    ENV_LOG_ARCHIVE_BUCKET,
    ENV_SOURCES_BUCKET,
    ENV_STATE_MACHINE_ARN,
    SOURCES_PREFIX,
)
from infra.iam import execution_arn, list_prefixes

API_TIMEOUT_SECONDS = 30  # API Gateway's integration timeout is 29 s; long polls wait at most 20 s
LOGS_QUERY = ("after", "limit", "wait")
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/builds"),
    ("GET", "/builds"),
    ("GET", "/builds/{id}"),
    ("GET", "/builds/{id}/logs"),
    ("POST", "/builds/{id}/cancel"),
    ("GET", "/openapi.json"),
)


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
        # API Gateway's own 400s (validation) in the API's error shape: {error, message}
        api.add_gateway_response(
            "BadRequestBody",
            type=apigw.ResponseType.BAD_REQUEST_BODY,
            templates={
                "application/json": '{"error": "bad_request", "message": "$context.error.validationErrorString"}'
            },
        )
        api.add_gateway_response(
            "BadRequestParameters",
            type=apigw.ResponseType.BAD_REQUEST_PARAMETERS,
            templates={
                "application/json": '{"error": "bad_request", "message": "$context.error.validationErrorString"}'
            },
        )
        return api

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
        path_id = {"method.request.path.id": True}
        builds = api.root.add_resource("builds")
        build = builds.add_resource("{id}")
        openapi = api.root.add_resource("openapi.json")

        builds.add_method(
            "POST", integration, request_validator=validator, request_models={"application/json": json_object}
        )
        builds.add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={"method.request.querystring.limit": False},
        )
        build.add_method("GET", integration, request_validator=validator, request_parameters=path_id)
        build.add_resource("logs").add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={
                **path_id,
                **{f"method.request.querystring.{name}": False for name in LOGS_QUERY},
            },
        )
        build.add_resource("cancel").add_method(
            "POST", integration, request_validator=validator, request_parameters=path_id
        )
        openapi.add_method("GET", integration, request_validator=validator)

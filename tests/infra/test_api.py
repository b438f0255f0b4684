"""REST API: IAM auth on every method, the routes, request validation, access logs, throttling."""

import json
import re
from typing import Any

import pytest

from buildlogs.api.app import openapi_json
from infra.api import OPENAPI_PATH, api_routes, gateway_template
from tests.support.synth import Synth


def _paths(synth: Synth) -> dict[str, str]:
    """logical id of each API resource → its full path."""
    resources = synth.resources("AWS::ApiGateway::Resource")
    api_id = synth.logical_id(synth.stack.api.rest_api)

    def path(logical_id: str) -> str:
        props = resources[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = "" if parent == {"Fn::GetAtt": [api_id, "RootResourceId"]} else path(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    return {logical_id: path(logical_id) for logical_id in resources}


def _methods(synth: Synth) -> dict[tuple[str, str], dict[str, Any]]:
    paths = _paths(synth)
    methods = {}
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        methods[(props["HttpMethod"], paths[props["ResourceId"]["Ref"]])] = props
    return methods


def test_exactly_the_routes_all_iam_authorized_and_validated(synth: Synth) -> None:
    methods = _methods(synth)
    routes = {(route.method, route.path): route for route in api_routes()}
    assert sorted(methods) == sorted(routes)
    function_id = synth.logical_id(synth.stack.api.function)
    for route, props in methods.items():
        assert props["AuthorizationType"] == "AWS_IAM", route
        assert "RequestValidatorId" in props, route
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert function_id in str(props["Integration"]["Uri"])
        assert props.get("RequestParameters", {}) == routes[route].request_parameters(), route
    for route in [r for r in routes if "{build_id}" in r[1]]:
        assert methods[route]["RequestParameters"]["method.request.path.build_id"] is True
    logs = methods[("GET", "/builds/{build_id}/logs")]["RequestParameters"]
    assert {"method.request.querystring.after", "method.request.querystring.limit"} <= set(logs)
    assert "application/json" in methods[("POST", "/builds")]["RequestModels"]


def test_every_route_of_the_app_has_its_gateway_method(synth: Synth) -> None:
    # GIVEN the resolver's own OpenAPI document
    document = json.loads(openapi_json())
    app_routes = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    # WHEN the stack is synthesized
    methods = set(_methods(synth))
    # THEN every documented route (and the document itself) is reachable through API Gateway, no more
    assert methods == app_routes | {("GET", OPENAPI_PATH)}
    assert ("GET", "/builds/{build_id}/logs") in methods


def test_validator_checks_body_and_parameters(synth: Synth) -> None:
    (validator,) = synth.resources("AWS::ApiGateway::RequestValidator").values()
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True


def test_stage_access_logs_throttling_tracing_execution_logs(synth: Synth) -> None:
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "dev"
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    assert "$context.requestId" in props["AccessLogSetting"]["Format"]
    (method,) = props["MethodSettings"]
    assert method["HttpMethod"] == "*"
    assert method["ResourcePath"] == "/*"
    assert method["LoggingLevel"] == "ERROR"
    assert method["DataTraceEnabled"] is False
    assert method["ThrottlingRateLimit"] == 50
    assert method["ThrottlingBurstLimit"] == 100


# What API Gateway substitutes for the variables a gateway response may use: messageString is
# its message already quoted as a JSON string (quotes and backslashes escaped). Messages with
# quotes, a backslash and a newline: what would break a template that embeds a raw string.
NASTY_MESSAGES = (
    'User: arn:aws:sts::123456789012:assumed-role/"dev"/x is not authorized to perform: execute-api:Invoke',
    '[instance type (string) does not match any allowed primitive type (allowed: ["object"])]',
    "back\\slash, 'single' and a\nnewline",
)
GATEWAY_VARIABLES = {"$context.error.messageString": json.dumps}
EXPECTED_RESPONSES = {
    # type: (status, error); None keeps API Gateway's status
    "BAD_REQUEST_BODY": ("400", "invalid_request"),  # the Lambda's code for a validation failure
    "BAD_REQUEST_PARAMETERS": ("400", "invalid_request"),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large"),
    "ACCESS_DENIED": ("403", "forbidden"),
    "MISSING_AUTHENTICATION_TOKEN": ("403", "forbidden"),
    "INVALID_SIGNATURE": ("403", "forbidden"),
    "EXPIRED_TOKEN": ("403", "forbidden"),
    "RESOURCE_NOT_FOUND": ("404", "not_found"),
    "THROTTLED": ("429", "too_many_requests"),
    "QUOTA_EXCEEDED": ("429", "too_many_requests"),
    "INTEGRATION_TIMEOUT": ("504", "gateway_timeout"),
    "DEFAULT_4XX": (None, "client_error"),
    "DEFAULT_5XX": (None, "internal_error"),
}


def _gateway_responses(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()
    }


def _render(template: str, message: str) -> str:
    """The body API Gateway sends: each $context variable substituted as API Gateway does."""
    for variable in re.findall(r"\$[A-Za-z][A-Za-z0-9_.]*", template):
        assert variable in GATEWAY_VARIABLES, f"{variable} is not substituted as a quoted JSON string"
        template = template.replace(variable, GATEWAY_VARIABLES[variable](message))
    return template


def test_gateway_responses_cover_auth_validation_throttling_timeouts_and_every_other_error(synth: Synth) -> None:
    # GIVEN the synthesized API
    # WHEN its gateway responses are listed
    responses = _gateway_responses(synth)
    # THEN the specific ones and both defaults exist, with the Lambda's codes and the right statuses
    assert set(responses) == set(EXPECTED_RESPONSES)
    for kind, (status, error) in EXPECTED_RESPONSES.items():
        assert responses[kind].get("StatusCode") == status, kind
        body = json.loads(_render(responses[kind]["ResponseTemplates"]["application/json"], "m"))
        assert body["error"] == error, kind


@pytest.mark.parametrize("message", NASTY_MESSAGES)
def test_every_gateway_response_body_is_json_with_error_and_message_only(synth: Synth, message: str) -> None:
    # GIVEN every gateway response template (JSON is the only content type: a single shape)
    for kind, response in _gateway_responses(synth).items():
        (content_type,) = response["ResponseTemplates"]
        assert content_type == "application/json", kind
        # WHEN API Gateway renders it with a message holding quotes, backslashes, newlines
        rendered = _render(response["ResponseTemplates"][content_type], message)
        # THEN the body is valid JSON with exactly error and message, both strings
        body = json.loads(rendered)
        assert set(body) == {"error", "message"}, kind
        assert all(isinstance(value, str) for value in body.values()), kind
        assert all(body.values()), kind
        if "$context.error.messageString" in response["ResponseTemplates"][content_type]:
            assert body["message"] == message, kind


def test_the_raw_validation_string_is_never_embedded(synth: Synth) -> None:
    # GIVEN the gateway response templates
    templates = [r["ResponseTemplates"]["application/json"] for r in _gateway_responses(synth).values()]
    # THEN none embeds an unquoted variable (validationErrorString holds quotes) nor VTL (not evaluated)
    for template in templates:
        assert "validationErrorString" not in template
        assert "$util" not in template
        assert "#" not in template


def test_a_fixed_gateway_message_cannot_hold_a_variable() -> None:
    # GIVEN a fixed message with a $ (it would be substituted, unescaped)
    # WHEN it is made into a template
    # THEN it is refused
    with pytest.raises(ValueError, match="must not hold a variable"):
        gateway_template("forbidden", "costs $context.error.message")


def test_outputs(synth: Synth) -> None:
    outputs = synth.json["Outputs"]
    assert {"ApiUrl", "StateMachineArn", "BucketName"} <= set(outputs)
    assert outputs["StateMachineArn"]["Value"] == {"Ref": synth.logical_id(synth.stack.pipeline.state_machine)}
    assert outputs["BucketName"]["Value"] == {"Ref": synth.logical_id(synth.stack.storage.bucket)}

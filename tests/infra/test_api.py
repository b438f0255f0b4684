"""REST API: IAM auth on every method, the routes, request validation, access logs, throttling."""

from typing import Any

from infra.api import ROUTES
from tests.infra.conftest import Synth


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
    assert sorted(methods) == sorted(ROUTES)
    function_id = synth.logical_id(synth.stack.api.function)
    for route, props in methods.items():
        assert props["AuthorizationType"] == "AWS_IAM", route
        assert "RequestValidatorId" in props, route
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert function_id in str(props["Integration"]["Uri"])
    for route in [r for r in ROUTES if "{id}" in r[1]]:
        assert methods[route]["RequestParameters"]["method.request.path.id"] is True
    logs = methods[("GET", "/builds/{id}/logs")]["RequestParameters"]
    assert {k: v for k, v in logs.items() if "querystring" in k} == {
        "method.request.querystring.after": False,
        "method.request.querystring.limit": False,
        "method.request.querystring.wait": False,
    }
    assert "application/json" in methods[("POST", "/builds")]["RequestModels"]


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


def test_validation_errors_use_the_api_error_shape(synth: Synth) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    for kind in ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS"):
        template = responses[kind]["ResponseTemplates"]["application/json"]
        assert '"error"' in template
        assert '"message"' in template


def test_outputs(synth: Synth) -> None:
    outputs = synth.json["Outputs"]
    assert {"ApiUrl", "StateMachineArn", "BucketName"} <= set(outputs)
    assert outputs["StateMachineArn"]["Value"] == {"Ref": synth.logical_id(synth.stack.pipeline.state_machine)}
    assert outputs["BucketName"]["Value"] == {"Ref": synth.logical_id(synth.stack.storage.bucket)}

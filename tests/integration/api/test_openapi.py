"""The OpenAPI document is valid OpenAPI, declares IAM (SigV4) auth on every operation and documents every parameter."""

import json
import re
from typing import Any

from openapi_spec_validator import validate

from buildlogs.api.app import SECURITY_SCHEME, openapi_json


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(openapi_json())
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_the_document_validates_with_openapi_spec_validator() -> None:
    # GIVEN the generated document WHEN it is validated THEN no error is raised (dangling $refs included)
    validate(_document())


def test_every_ref_points_at_a_component() -> None:
    document = _document()
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs, "the document refers to its schemas"
    assert refs <= set(document["components"]["schemas"])
    assert "ValidationError" not in document["components"]["schemas"]


def test_the_sigv4_scheme_is_declared_as_api_gateway_expects() -> None:
    schemes = _document()["components"]["securitySchemes"]
    assert schemes == {
        SECURITY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": schemes[SECURITY_SCHEME]["description"],
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }


def test_every_operation_requires_sigv4() -> None:
    operations = _operations(_document())
    assert len(operations) >= 5
    for name, operation in operations:
        assert operation.get("security") == [{SECURITY_SCHEME: []}], name


def test_every_parameter_has_a_description() -> None:
    # GIVEN every operation WHEN its parameters are listed THEN each one says what it is
    for name, operation in _operations(_document()):
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), f"{name}: parameter {parameter['name']} has no description"


def test_no_operation_documents_the_resolvers_422() -> None:
    for name, operation in _operations(_document()):
        assert "422" not in operation["responses"], name


def test_the_events_heartbeat_is_not_said_to_keep_proxies_open() -> None:
    # a buffered body's first comment arrives with the rest: it cannot keep an idle proxy open
    description = _document()["paths"]["/builds/{build_id}/events"]["get"]["description"]
    assert "`: heartbeat`" in description
    assert "cannot keep an idle proxy open" in description

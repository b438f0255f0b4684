"""The response schemas: statuses typed with the enums of buildlogs.statuses and buildlogs.stream.summary,
so validation and the OpenAPI document know every value, and the JSON stays the same strings."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from buildlogs.api.app import openapi_json
from buildlogs.api.schemas import BuildItem, BuildStage, BuildStatus
from buildlogs.statuses import PENDING, ApiStatus, ExecutionStatus, build_status
from buildlogs.stream.summary import StageStatus

BUILD_STATUSES = [*(status.value for status in ExecutionStatus), PENDING]


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = json.loads(openapi_json())["components"]["schemas"]
    return schemas


def _values(schemas: dict[str, Any], prop: dict[str, Any]) -> list[str]:
    """Every value a property's schema allows (through $ref and anyOf)."""
    if "$ref" in prop:
        return _values(schemas, schemas[prop["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in prop:
        return [value for option in prop["anyOf"] for value in _values(schemas, option)]
    return list(prop.get("enum") or [prop["const"]])


@pytest.mark.parametrize("status", BUILD_STATUSES)
def test_a_build_status_is_any_execution_status_or_pending_and_dumps_as_that_string(status: str) -> None:
    body = BuildStatus(build_id="b1", status=build_status(status), logs_url="/builds/b1/logs")
    assert json.loads(body.model_dump_json())["status"] == status
    assert BuildStatus.model_validate({"build_id": "b1", "status": status, "logs_url": "x"}).status == status


def test_a_build_status_rejects_a_word_that_is_no_status() -> None:
    with pytest.raises(ValidationError):
        BuildStatus.model_validate({"build_id": "b1", "status": "DONE", "logs_url": "x"})
    with pytest.raises(ValueError, match="DONE"):
        build_status("DONE")


def test_build_status_parses_pending_as_the_api_s_own() -> None:
    assert build_status(PENDING) is ApiStatus.PENDING
    assert build_status("ABORTED") is ExecutionStatus.ABORTED


@pytest.mark.parametrize("status", ["running", "succeeded", "failed", "interrupted", "skipped"])
def test_a_stage_status_keeps_its_lowercase_json_value(status: str) -> None:
    stage = BuildStage.model_validate({"name": "build", "status": status})
    assert stage.status is StageStatus(status)
    assert json.loads(stage.model_dump_json())["status"] == status


def test_the_openapi_document_lists_every_status_value() -> None:
    schemas = _components()
    assert _values(schemas, schemas["BuildStatus"]["properties"]["status"]) == BUILD_STATUSES
    assert _values(schemas, schemas["BuildItem"]["properties"]["status"]) == [s.value for s in ExecutionStatus]
    assert _values(schemas, schemas["BuildStage"]["properties"]["status"]) == [
        "running",
        "succeeded",
        "failed",
        "interrupted",
        "skipped",
    ]


def test_a_listed_build_s_status_is_an_execution_s() -> None:
    item = {"build_id": "b1", "status": "PENDING", "status_url": "x", "logs_url": "y"}
    with pytest.raises(ValidationError):
        BuildItem.model_validate(item)

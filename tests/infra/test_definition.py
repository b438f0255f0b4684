"""The resolved definition (infra.definition) is what deploys, and moto runs it."""

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from buildlogs.client.moto_hook import TaskFailed, route_lambda_tasks
from buildlogs.pipeline.stages import PIPELINE, STAGES
from infra.constants import fake_function_arn
from infra.definition import resolve_definition, stage_function_arns
from tests.support.synth import Synth


def test_every_stage_function_resolves_to_its_fake_arn(synth: Synth) -> None:
    arns = stage_function_arns(synth.json)
    assert sorted(arns.values()) == sorted(fake_function_arn(stage.name) for stage in STAGES)
    text = resolve_definition(synth.json)
    asl = json.loads(text)
    for stage in STAGES:
        assert asl["States"][stage.state]["Resource"] == fake_function_arn(stage.name)
    assert "Fn::" not in text
    assert "Ref" not in text


def test_unresolvable_token_is_a_clear_error(synth: Synth) -> None:
    template = json.loads(json.dumps(synth.json))
    machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    machine["Properties"]["DefinitionString"]["Fn::Join"][1].append({"Fn::GetAtt": ["Nope", "Arn"]})
    with pytest.raises(ValueError, match="cannot resolve"):
        resolve_definition(template)


@pytest.fixture
def sfn_client() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")


def _run(sfn_client: Any, definition: str, behaviour: dict[str, list[Any]]) -> tuple[dict[str, Any], list[str]]:
    calls: list[str] = []

    def invoke(function_name: str, state: dict[str, Any]) -> dict[str, Any]:
        stage = function_name.rsplit("-", 1)[-1]
        calls.append(stage)
        outcomes = behaviour.get(stage, [])
        outcome = outcomes.pop(0) if outcomes else None
        if isinstance(outcome, str):
            raise TaskFailed(outcome, f"{stage} failed")
        if stage == "provision":
            state["sandbox_id"] = "sbx-1"
        return state

    arn = sfn_client.create_state_machine(
        name="buildlogs", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    with route_lambda_tasks(invoke):
        execution = sfn_client.start_execution(
            stateMachineArn=arn, name="b-1", input=json.dumps({"build_id": "b-1", "spec_ref": "sources/b-1/spec.json"})
        )["executionArn"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described: dict[str, Any] = sfn_client.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described, calls
            time.sleep(0.05)
    pytest.fail("the execution did not end within 30 s")


def test_moto_runs_the_happy_path_in_registry_order(synth: Synth, sfn_client: Any) -> None:
    described, calls = _run(sfn_client, resolve_definition(synth.json), {})
    assert described["status"] == "SUCCEEDED"
    assert calls == [stage.name for stage in PIPELINE]
    assert json.loads(described["output"]) == {
        "build_id": "b-1",
        "spec_ref": "sources/b-1/spec.json",
        "sandbox_id": "sbx-1",
    }


def test_moto_retries_sandbox_unavailable_then_catches_into_cleanup(synth: Synth, sfn_client: Any) -> None:
    behaviour: dict[str, list[Any]] = {"scaffold": ["SandboxUnavailable"], "install": ["CommandFailed"]}
    described, calls = _run(sfn_client, resolve_definition(synth.json), behaviour)
    assert calls == ["provision", "scaffold", "scaffold", "install", "cleanup"]
    assert described["status"] == "FAILED"
    assert described["error"] == "CommandFailed"  # the original error, kept through Cleanup


def test_moto_cleanup_failure_still_ends_failed_with_the_original_error(synth: Synth, sfn_client: Any) -> None:
    behaviour: dict[str, list[Any]] = {"provision": ["CommandFailed"], "cleanup": ["CommandFailed"]}
    described, calls = _run(sfn_client, resolve_definition(synth.json), behaviour)
    assert calls == ["provision", "cleanup"]
    assert described["status"] == "FAILED"
    assert described["error"] == "CommandFailed"
    assert "provision failed" in described["cause"]

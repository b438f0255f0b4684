"""The state machine: built from the stage registry, retries, Catch → Cleanup → Fail, logging, tracing."""

import json
from typing import Any

from aws_cdk.assertions import Match

from buildlogs.pipeline.stages import CLEANUP, PIPELINE, SANDBOX_UNAVAILABLE, STAGES
from infra.constants import ENV_STAGE, FAILURE_RESULT_PATH, LAMBDA_SERVICE_ERRORS
from infra.definition import resolve_definition
from infra.state_machine import CLEANUP_FAILURE_RESULT_PATH, FAILED_STATE, SUCCEEDED_STATE
from tests.support.synth import Synth


def _asl(synth: Synth) -> dict[str, Any]:
    return json.loads(resolve_definition(synth.json))


def _happy_path(asl: dict[str, Any]) -> list[str]:
    order, name = [], asl["StartAt"]
    while name:
        order.append(name)
        name = asl["States"][name].get("Next")
    return order


def test_standard_with_error_logging_without_execution_data_and_tracing(synth: Synth) -> None:
    machines = synth.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    props = next(iter(machines.values()))["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ERROR"
    assert logging["IncludeExecutionData"] is False
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]


def test_tasks_follow_the_registry(synth: Synth) -> None:
    asl = _asl(synth)
    assert _happy_path(asl) == [stage.state for stage in PIPELINE] + [SUCCEEDED_STATE]
    tasks = [name for name, state in asl["States"].items() if state["Type"] == "Task"]
    assert sorted(tasks) == sorted(stage.state for stage in STAGES)
    assert asl["States"][SUCCEEDED_STATE]["Type"] == "Succeed"


def test_each_task_invokes_its_stage_function(synth: Synth) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    definition = next(iter(synth.resources("AWS::StepFunctions::StateMachine").values()))["Properties"]
    parts = definition["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    for stage in STAGES:
        logical_id = synth.logical_id(synth.stack.stages.functions[stage.name])
        assert functions[logical_id]["Properties"]["Environment"]["Variables"][ENV_STAGE] == stage.name
        # the task's Resource is exactly this function (payload only: no lambda:invoke envelope)
        marker = f'"{stage.state}":'
        state_text = text[text.index(marker) :]
        resource = state_text[state_text.index('"Resource":') :][:200]
        assert logical_id in resource, (stage.state, resource)


def test_retry_on_lambda_service_errors_and_the_stage_retryable_errors_only(synth: Synth) -> None:
    asl = _asl(synth)
    for stage in STAGES:
        retry = asl["States"][stage.state]["Retry"]
        assert retry == [
            {
                "ErrorEquals": [*LAMBDA_SERVICE_ERRORS, *stage.retryable_errors],
                "IntervalSeconds": 1,  # TEST_CONTEXT: buildlogs:retryIntervalSeconds
                "MaxAttempts": 3,
                "BackoffRate": 2,
            }
        ]
        assert "States.ALL" not in retry[0]["ErrorEquals"]
        assert set(stage.retryable_errors) <= {SANDBOX_UNAVAILABLE}


def test_any_failure_goes_to_cleanup_keeping_the_error_then_fails(synth: Synth) -> None:
    asl = _asl(synth)
    for stage in PIPELINE:
        assert asl["States"][stage.state]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": FAILURE_RESULT_PATH, "Next": CLEANUP.state}
        ]
    cleanup = asl["States"][CLEANUP.state]
    assert cleanup["ResultPath"] is None  # keeps the state and the original error
    assert cleanup["Next"] == FAILED_STATE
    assert cleanup["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": CLEANUP_FAILURE_RESULT_PATH, "Next": FAILED_STATE}
    ]
    failed = asl["States"][FAILED_STATE]
    assert failed["Type"] == "Fail"
    assert failed["ErrorPath"] == f"{FAILURE_RESULT_PATH}.Error"
    assert failed["CausePath"] == f"{FAILURE_RESULT_PATH}.Cause"


def test_state_stays_small_payload_only_no_envelope(synth: Synth) -> None:
    asl = _asl(synth)
    for stage in STAGES:
        state = asl["States"][stage.state]
        assert state["Resource"].startswith("arn:aws:lambda:"), "payload_response_only: the function ARN"
        assert "Parameters" not in state  # the whole (small) execution state is the payload


def test_execution_timeout_is_set(synth: Synth) -> None:
    synth.template.has_resource_properties("AWS::StepFunctions::StateMachine", {"DefinitionString": Match.any_value()})
    asl = _asl(synth)
    assert asl["TimeoutSeconds"] == 180 * 60

"""The state machine definition ``cdk deploy`` ships, resolved so it runs locally (moto) without AWS.

DESIGN.md "Running the real state machine locally": the template's ``DefinitionString`` is an
``Fn::Join`` of strings, ``Fn::GetAtt`` stage function ARNs and ``Ref``s to pseudo parameters.
Each stage function resolves to ``arn:aws:lambda:us-east-1:123456789012:function:buildlogs-<STAGE>``
(``infra.constants.fake_function_arn``), pseudo parameters to that partition/region/account.

Usage (the local runner, tests)::

    from infra.definition import state_machine_definition, state_machine_definition_json
    asl = state_machine_definition({"buildlogs:retryIntervalSeconds": 1})   # dict
    sfn.create_state_machine(name=..., definition=state_machine_definition_json(), roleArn=...)

The stack is synthesized in-process with cdk.json's context (as the CLI does) plus ``context``;
layer bundling is skipped (it does not change the definition) and no Docker or AWS is needed.
"""

import json
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from infra.constants import ENV_STAGE, FAKE_ACCOUNT, FAKE_PARTITION, FAKE_REGION, fake_function_arn

PSEUDO_PARAMETERS = {
    "AWS::Partition": FAKE_PARTITION,
    "AWS::Region": FAKE_REGION,
    "AWS::AccountId": FAKE_ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}


def stage_function_arns(template: Mapping[str, Any]) -> dict[str, str]:
    """Logical id of each stage function (a Lambda function with a STAGE variable) → its fake ARN."""
    arns: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        stage = variables.get(ENV_STAGE)
        if isinstance(stage, str) and stage:
            arns[logical_id] = fake_function_arn(stage)
    return arns


def _resolve(part: Any, arns: Mapping[str, str]) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and len(part) == 1:
        (function, argument), *_ = part.items()
        if function == "Ref" and argument in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[argument]
        if function == "Fn::GetAtt" and argument[1] == "Arn" and argument[0] in arns:
            return arns[argument[0]]
    raise ValueError(f"cannot resolve {part!r} in the state machine definition (only stage function ARNs)")


def resolve_definition(template: Mapping[str, Any]) -> str:
    """The ASL JSON of the template's one state machine, with every token resolved."""
    machines = [
        r for r in template.get("Resources", {}).values() if r.get("Type") == "AWS::StepFunctions::StateMachine"
    ]
    if len(machines) != 1:
        raise ValueError(f"expected one state machine in the template, found {len(machines)}")
    definition = machines[0]["Properties"]["DefinitionString"]
    if isinstance(definition, str):
        return definition
    if not (isinstance(definition, dict) and set(definition) == {"Fn::Join"}):
        raise ValueError(f"unexpected DefinitionString shape: {definition!r:.200}")
    separator, parts = definition["Fn::Join"]
    arns = stage_function_arns(template)
    text = str(separator).join(_resolve(part, arns) for part in parts)
    json.loads(text)  # fail here, not in the runner, if the result is not JSON
    return text


def synthesize_template(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stack's CloudFormation template, synthesized in-process (cdk.json context + ``context``)."""
    from infra.builder import build_app  # jsii starts only when needed

    # No asset bundling at all (the CDK's own switch): the definition does not depend on assets.
    overrides = {"buildlogs:layerBundling": "skip", "aws:cdk:bundling-stacks": [], **(context or {})}
    with tempfile.TemporaryDirectory(prefix="buildlogs-cdk-") as outdir:
        app, stack = build_app(overrides, outdir=outdir, nag=False)
        template: dict[str, Any] = app.synth().get_stack_artifact(stack.artifact_id).template
    return template


@lru_cache(maxsize=8)
def _definition_json(context_items: tuple[tuple[str, Any], ...]) -> str:
    return resolve_definition(synthesize_template(dict(context_items)))


def state_machine_definition_json(context: Mapping[str, Any] | None = None) -> str:
    """The deployed definition as ASL JSON text, ready for ``create_state_machine(definition=...)``."""
    return _definition_json(tuple(sorted((context or {}).items())))


def state_machine_definition(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The deployed definition as a dict (``StartAt``, ``States``, ...)."""
    result: dict[str, Any] = json.loads(state_machine_definition_json(context))
    return result

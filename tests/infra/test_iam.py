"""Least privilege: no `*` resource where AWS allows scoping; each function gets only what it uses."""

import json
from typing import Any

from infra.constants import ARCHIVE_PREFIX, SOURCES_PREFIX
from tests.support.synth import Synth

# Actions AWS offers no resource-level permission for (X-Ray, log delivery for Step Functions logging).
UNSCOPABLE = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _key_pattern(resource: str) -> str:
    """The key part of an ``arn_for_objects`` resource: ``/sources/*`` of ``Fn::Join [<bucket arn>, "/sources/*"]``."""
    value = json.loads(resource)
    parts = value["Fn::Join"][1]
    assert parts[0] == {"Fn::GetAtt": [parts[0]["Fn::GetAtt"][0], "Arn"]}, resource
    return str(parts[-1])


def _statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    role_id = synth.stack.get_logical_id(role.node.default_child)
    found = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _grants(synth: Synth, role: Any) -> dict[str, list[str]]:
    """action → resources (as JSON text, tokens included)."""
    grants: dict[str, list[str]] = {}
    for statement in _statements(synth, role):
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, []).extend(json.dumps(r) for r in _as_list(statement["Resource"]))
    return grants


def test_no_wildcard_resource_where_scoping_exists(synth: Synth) -> None:
    for logical_id, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "*" in _as_list(statement["Resource"]):
                assert set(_as_list(statement["Action"])) <= UNSCOPABLE, (logical_id, statement)
            assert not any(a.endswith(":*") or a == "*" for a in _as_list(statement["Action"])), statement


def test_stage_functions_read_specs_and_the_secret_only(synth: Synth) -> None:
    secret = json.dumps({"Ref": synth.logical_id(synth.stack.e2b_secret)})
    for function in synth.stack.stages.functions.values():
        grants = _grants(synth, function.role)
        assert set(grants) - UNSCOPABLE == {
            "s3:GetObject",
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
        }
        assert grants["secretsmanager:GetSecretValue"] == [secret]
        assert [_key_pattern(r) for r in grants["s3:GetObject"]] == [f"/{SOURCES_PREFIX}*"]


def test_api_grants(synth: Synth) -> None:
    grants = _grants(synth, synth.stack.api.function.role)
    machine = json.dumps({"Ref": synth.logical_id(synth.stack.pipeline.state_machine)})
    assert grants["states:StartExecution"] == [machine]
    assert grants["states:ListExecutions"] == [machine]
    assert "states:GetExecutionHistory" not in grants
    for action in ("states:DescribeExecution", "states:StopExecution"):
        (resource,) = grants[action]
        assert ':execution:"' in resource
        assert '"Name"]}, ":*"' in resource
    assert [_key_pattern(r) for r in grants["s3:PutObject"]] == [f"/{SOURCES_PREFIX}*"]
    assert sorted(_key_pattern(r) for r in grants["s3:GetObject"]) == sorted(
        [f"/{SOURCES_PREFIX}*", f"/{ARCHIVE_PREFIX}*"]
    )
    (bucket,) = grants["s3:ListBucket"]
    assert bucket == json.dumps({"Fn::GetAtt": [synth.logical_id(synth.stack.storage.bucket), "Arn"]})
    listing = next(s for s in _statements(synth, synth.stack.api.function.role) if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{SOURCES_PREFIX}*", f"{ARCHIVE_PREFIX}*"]}}
    assert not any(a.startswith("secretsmanager:") for a in grants)


def test_archiver_grants(synth: Synth) -> None:
    grants = _grants(synth, synth.stack.archive.function.role)
    machine = json.dumps({"Ref": synth.logical_id(synth.stack.pipeline.state_machine)})
    assert grants["states:ListExecutions"] == [machine]
    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"):
        assert [_key_pattern(r) for r in grants[action]] == [f"/{ARCHIVE_PREFIX}*"]
    (bucket,) = grants["s3:ListBucket"]
    assert bucket == json.dumps({"Fn::GetAtt": [synth.logical_id(synth.stack.storage.bucket), "Arn"]})
    listing = next(s for s in _statements(synth, synth.stack.archive.function.role) if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{ARCHIVE_PREFIX}*"]}}
    assert "states:StartExecution" not in grants
    assert "states:StopExecution" not in grants


def test_archiving_off_grants_no_archive_access(alt_synth: Synth) -> None:
    archiver = _grants(alt_synth, alt_synth.stack.archive.function.role)
    api = _grants(alt_synth, alt_synth.stack.api.function.role)
    assert not any(a.startswith("s3:") for a in archiver)
    assert [_key_pattern(r) for r in api["s3:GetObject"]] == [f"/{SOURCES_PREFIX}*"]


def test_only_stage_functions_and_the_archiver_read_the_secret(synth: Synth) -> None:
    secret = json.dumps({"Ref": synth.logical_id(synth.stack.e2b_secret)})
    readers = set()
    for logical_id, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if secret in [json.dumps(r) for r in _as_list(statement["Resource"])]:
                readers.add(logical_id)
    expected = {
        synth.stack.get_logical_id(f.role.node.find_child("DefaultPolicy").node.default_child)  # type: ignore[union-attr]
        for f in [*synth.stack.stages.functions.values(), synth.stack.archive.function]
    }
    assert readers == expected


def test_state_machine_invokes_only_the_stage_functions(synth: Synth) -> None:
    grants = _grants(synth, synth.stack.pipeline.state_machine.role)
    invoked = grants["lambda:InvokeFunction"]
    ids = {synth.logical_id(f) for f in synth.stack.stages.functions.values()}
    assert {json.loads(r)["Fn::GetAtt"][0] for r in invoked if r.startswith('{"Fn::GetAtt"')} == ids
    assert set(grants) - UNSCOPABLE == {"lambda:InvokeFunction"}


def test_sweep_schedule_role_invokes_the_archiver_only(synth: Synth) -> None:
    schedule = next(iter(synth.resources("AWS::Scheduler::Schedule").values()))["Properties"]
    role_id = schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]
    role = synth.json["Resources"][role_id]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "scheduler.amazonaws.com"}
    statements = [
        s
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    assert invoke["Resource"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.archive.function), "Arn"]}

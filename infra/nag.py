"""cdk-nag AwsSolutions suppressions. Each names its rule, the exact finding where the rule reports
one per resource (``applies_to``), and a reason that holds for this stack."""

from typing import TYPE_CHECKING

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

from infra.constants import ARCHIVE_PREFIX, SOURCES_PREFIX

if TYPE_CHECKING:
    from infra.stack import BuildlogsStack

MANAGED_LAMBDA_POLICIES = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
)
APIGW_CLOUDWATCH_POLICY = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
)
XRAY_REASON = (
    "Resource::* holds only xray:PutTraceSegments/PutTelemetryRecords (active tracing), which support no "
    "resource-level permissions"
)


def _suppress(construct: IConstruct, rule: str, reason: str, applies_to: list[str] | None = None) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)],
        apply_to_children=True,
    )


def _arn_of(construct: IConstruct) -> str:
    resource = construct.node.default_child
    assert isinstance(resource, CfnResource), f"{construct.node.path} has no CloudFormation resource"
    return f"<{Stack.of(construct).get_logical_id(resource)}.Arn>"


def _execution_arns(stack: "BuildlogsStack") -> str:
    machine = stack.get_logical_id(stack.pipeline.state_machine.node.default_child)  # type: ignore[arg-type]
    return f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<{machine}.Name>:*"


def _function_role(function: lambda_.Function) -> iam.IRole:
    assert function.role is not None
    return function.role


def _suppress_function(function: lambda_.Function, wildcards: dict[str, str]) -> None:
    role = _function_role(function)
    _suppress(
        role,
        "AwsSolutions-IAM4",
        "AWSLambdaBasicExecutionRole (write to its own log group) and AWSLambdaVPCAccessExecutionRole "
        "(ENI management, whose ec2 actions support no resource scoping) are the policies Lambda documents "
        "for a function in a VPC",
        list(MANAGED_LAMBDA_POLICIES),
    )
    _suppress(role, "AwsSolutions-IAM5", XRAY_REASON, ["Resource::*"])
    for finding, reason in wildcards.items():
        _suppress(role, "AwsSolutions-IAM5", reason, [finding])


def add_suppressions(stack: "BuildlogsStack") -> None:
    bucket = _arn_of(stack.storage.bucket)
    sources = f"Resource::{bucket}/{SOURCES_PREFIX}*"
    archive = f"Resource::{bucket}/{ARCHIVE_PREFIX}*"
    executions = _execution_arns(stack)
    sources_reason = "Object-level access is scoped to the sources/ prefix (one spec.json per build id)"
    archive_reason = "Object-level access is scoped to the build-logs/ prefix (one build.jsonl per build id)"
    executions_reason = "Scoped to the executions of this state machine (an execution ARN per build id)"

    for function in stack.stages.functions.values():
        _suppress_function(function, {sources: sources_reason})
    _suppress_function(stack.archive.function, {archive: archive_reason, executions: executions_reason})
    _suppress_function(
        stack.api.function, {sources: sources_reason, archive: archive_reason, executions: executions_reason}
    )

    machine = stack.pipeline.state_machine
    _suppress(
        machine.role,
        "AwsSolutions-IAM5",
        "lambda:InvokeFunction on the stage functions' qualified ARNs (<function>:*, versions/aliases), "
        "added by the LambdaInvoke tasks",
        [f"Resource::{_arn_of(function)}:*" for function in stack.stages.functions.values()],
    )
    _suppress(
        machine.role,
        "AwsSolutions-IAM5",
        "Resource::* holds only the CloudWatch Logs delivery actions execution logging needs and the X-Ray "
        "actions of tracing; AWS supports no resource scoping for them",
        ["Resource::*"],
    )
    _suppress(
        machine,
        "AwsSolutions-SF1",
        "Execution logging is ERROR level with execution data off on purpose: state inputs carry the build's "
        "spec reference and errors may echo secrets; the full run history stays in Step Functions itself",
    )
    _suppress(
        stack.e2b_secret,
        "AwsSolutions-SMG4",
        "A third-party E2B API key: it is issued and rotated in E2B's dashboard, no rotation Lambda can mint "
        "one; the operator puts the new value (see README 'Deploy to AWS')",
    )
    rest_api = stack.api.rest_api
    _suppress(
        rest_api,
        "AwsSolutions-COG4",
        "Every method uses IAM (SigV4) authorization: callers are AWS principals (the buildlogs CLI, CI), "
        "not end users of a Cognito user pool",
    )
    _suppress(
        rest_api,
        "AwsSolutions-IAM4",
        "AmazonAPIGatewayPushToCloudWatchLogs is the policy API Gateway documents for its account-level "
        "CloudWatch role (execution logging)",
        [APIGW_CLOUDWATCH_POLICY],
    )
    _suppress(
        rest_api,
        "AwsSolutions-APIG3",
        "No WAF: every method requires SigV4-signed requests of IAM principals and the stage is throttled; "
        "a web ACL would add cost without filtering anonymous traffic, which never reaches the integration",
    )

"""Scoped ARNs for IAM statements (no ``*`` resource where AWS allows scoping)."""

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


def execution_arn(scope: Construct, state_machine: sfn.StateMachine) -> str:
    """``arn:…:states:…:execution:<this machine's name>:*`` — the executions of this machine only."""
    return Stack.of(scope).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine.state_machine_name}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def list_prefixes(bucket: s3.IBucket, *prefixes: str) -> iam.PolicyStatement:
    """ListBucket limited to ``prefixes``: S3 then answers 404, not 403, for a missing key there."""
    return iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
    )

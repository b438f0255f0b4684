"""Small helpers the constructs share: log retention, the functions' common settings, cdk-nag reasons."""

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct, IConstruct

from infra.config import LOG_RETENTION, StackSettings
from infra.constants import (
    ENV_LOG_LEVEL,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    ENV_REDIS_CLUSTER,
    ENV_REDIS_URL,
    FUNCTIONS_DIR,
    HANDLER,
    METRICS_NAMESPACE,
    SERVICE_NAME,
)
from infra.layer import ARCHITECTURE, RUNTIME


def retention_days(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention for a number of days (the settings validate the number)."""
    try:
        return LOG_RETENTION[days]
    except KeyError:
        raise ValueError(f"no CloudWatch Logs retention of {days} days") from None


def function_code(name: str) -> lambda_.Code:
    """A function's code asset: its own directory, functions/<name>/ (its handler.py)."""
    directory = FUNCTIONS_DIR / name
    if not (directory / "handler.py").is_file():
        raise FileNotFoundError(
            f"{_relative(directory / 'handler.py')} is missing: the {name} function's code asset "
            "(see DESIGN.md 'Layout'); synth needs every handler"
        )
    return lambda_.Code.from_asset(str(directory), exclude=["__pycache__", "*.pyc", "tests"])


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(FUNCTIONS_DIR.parent))
    except ValueError:
        return str(path)


def log_group(scope: Construct, construct_id: str, settings: StackSettings) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention_days(settings.log_retention_days),
        removal_policy=RemovalPolicy.DESTROY,
    )


class Network:
    """What a function needs to reach Redis: the VPC, its subnets, the security group, the URL."""

    def __init__(
        self,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        redis_url: str,
        redis_cluster: bool,
    ) -> None:
        self.vpc = vpc
        self.security_group = security_group
        self.redis_url = redis_url
        self.redis_cluster = redis_cluster


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    code_dir: str,
    description: str,
    timeout_seconds: int,
    layer: lambda_.ILayerVersion,
    network: Network,
    settings: StackSettings,
    environment: Mapping[str, str],
    memory_mb: int = 512,
) -> lambda_.Function:
    """A buildlogs function: the layer, Powertools env, Redis env, VPC, tracing, its own log group."""
    env = {
        ENV_POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        ENV_LOG_LEVEL: settings.log_level,
        ENV_REDIS_URL: network.redis_url,
        ENV_REDIS_CLUSTER: "true" if network.redis_cluster else "false",
        **environment,
    }
    return lambda_.Function(
        scope,
        construct_id,
        description=description,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=HANDLER,
        code=function_code(code_dir),
        layers=[layer],
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_seconds),
        environment=env,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group(scope, f"{construct_id}Logs", settings),
        vpc=network.vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        security_groups=[network.security_group],
    )


def suppress(construct: IConstruct, rules: Sequence[tuple[str, str]], *, apply_to_children: bool = True) -> None:
    """cdk-nag suppressions, each as (rule id, the reason that holds for this stack)."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason) for rule, reason in rules],
        apply_to_children=apply_to_children,
    )

"""One Lambda function per stage of the registry; each runs its stage in the build's E2B sandbox."""

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from buildlogs.pipeline.stages import STAGES, Stage
from infra.common import Network, python_function
from infra.config import StackSettings
from infra.constants import (
    ENV_E2B_API_KEY_SECRET_ARN,
    ENV_SANDBOX_RUNTIME,
    ENV_SOURCES_BUCKET,
    ENV_STAGE,
    SANDBOX_RUNTIME_E2B,
    SOURCES_PREFIX,
    STAGE_FUNCTION,
)


class StageFunctions(Construct):
    """``functions[stage.name]``: the stage's function (timeout from the registry, env STAGE)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        layer: lambda_.ILayerVersion,
        network: Network,
        bucket: s3.IBucket,
        e2b_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._layer = layer
        self._network = network
        self._bucket = bucket
        self._secret = e2b_secret
        self.functions: dict[str, lambda_.Function] = {stage.name: self._build_function(stage) for stage in STAGES}

    def _build_function(self, stage: Stage) -> lambda_.Function:
        function = python_function(
            self,
            stage.state,
            code_dir=STAGE_FUNCTION,
            description=f"buildlogs stage {stage.name}: {stage.label}",
            timeout_seconds=stage.timeout_seconds,
            layer=self._layer,
            network=self._network,
            settings=self._settings,
            environment={
                ENV_STAGE: stage.name,
                ENV_SANDBOX_RUNTIME: SANDBOX_RUNTIME_E2B,
                ENV_E2B_API_KEY_SECRET_ARN: self._secret.secret_arn,
                ENV_SOURCES_BUCKET: self._bucket.bucket_name,
            },
        )
        self._grant(function)
        return function

    def _grant(self, function: lambda_.Function) -> None:
        self._secret.grant_read(function)  # GetSecretValue/DescribeSecret on this secret only
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self._bucket.arn_for_objects(f"{SOURCES_PREFIX}*")]
            )
        )

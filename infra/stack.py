"""The one stack: composes the constructs, one per capability."""

from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.api import Api
from infra.archive import Archive
from infra.common import Network
from infra.config import StackSettings
from infra.layer import BuildlogsLayer
from infra.network import NetworkAndCache
from infra.stage_functions import StageFunctions
from infra.state_machine import BuildStateMachine
from infra.storage import BuildBucket

OUTPUT_API_URL = "ApiUrl"
OUTPUT_STATE_MACHINE_ARN = "StateMachineArn"
OUTPUT_BUCKET_NAME = "BucketName"
OUTPUT_E2B_SECRET_ARN = "E2bApiKeySecretArn"  # noqa: S105 (an output id)


class BuildlogsStack(Stack):
    """VPC + cache, layer, bucket, E2B secret, stage functions, state machine, archive, API."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.network = NetworkAndCache(self, "Network", settings=settings)
        function_network = Network(
            vpc=self.network.vpc,
            security_group=self.network.lambda_security_group,
            redis_url=self.network.redis_url,
            redis_cluster=self.network.redis_cluster,
        )
        self.layer = BuildlogsLayer(self, "Layer", bundling=settings.layer_bundling).layer
        self.storage = BuildBucket(self, "Storage", settings=settings)
        self.e2b_secret = self._build_e2b_secret()
        self.stages = StageFunctions(
            self,
            "Stages",
            settings=settings,
            layer=self.layer,
            network=function_network,
            bucket=self.storage.bucket,
            e2b_secret=self.e2b_secret,
        )
        functions: dict[str, lambda_.IFunction] = dict(self.stages.functions)
        self.pipeline = BuildStateMachine(self, "Pipeline", settings=settings, functions=functions)
        self.archive = Archive(
            self,
            "Archive",
            settings=settings,
            layer=self.layer,
            network=function_network,
            bucket=self.storage.bucket,
            state_machine=self.pipeline.state_machine,
            e2b_secret=self.e2b_secret,
        )
        self.api = Api(
            self,
            "Api",
            settings=settings,
            layer=self.layer,
            network=function_network,
            bucket=self.storage.bucket,
            state_machine=self.pipeline.state_machine,
        )
        self._build_outputs()

    def _build_e2b_secret(self) -> secretsmanager.Secret:
        # Created empty-ish (a generated placeholder); the operator sets the real value after deploy:
        #   aws secretsmanager put-secret-value --secret-id <E2bApiKeySecretArn> --secret-string "$E2B_API_KEY"
        return secretsmanager.Secret(
            self,
            "E2bApiKey",
            description="buildlogs: the E2B API key (set by the operator; read by the stage functions and archiver)",
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_outputs(self) -> None:
        CfnOutput(self, OUTPUT_API_URL, value=self.api.rest_api.url, description="REST API base URL (IAM auth)")
        CfnOutput(self, OUTPUT_STATE_MACHINE_ARN, value=self.pipeline.state_machine.state_machine_arn)
        CfnOutput(
            self, OUTPUT_BUCKET_NAME, value=self.storage.bucket.bucket_name, description="sources/ and build-logs/"
        )
        CfnOutput(self, OUTPUT_E2B_SECRET_ARN, value=self.e2b_secret.secret_arn, description="set its value once")

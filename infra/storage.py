"""The build bucket: BuildSpecs under ``sources/`` (written by the API, read by the stages) and
archived logs under ``build-logs/`` (written by the archiver, served by the API once a stream expires)."""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.common import suppress
from infra.config import StackSettings
from infra.constants import ARCHIVE_PREFIX, SOURCES_PREFIX


class BuildBucket(Construct):
    """``bucket`` (encrypted, private, SSL only, lifecycle per prefix) and its access-log bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.access_logs = self._build_access_log_bucket()
        self.bucket = self._build_bucket()

    def _build_access_log_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging requires SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
        )
        suppress(bucket, [("AwsSolutions-S1", "This is the access-log target bucket; logging it would recurse")])
        return bucket

    def _build_bucket(self) -> s3.Bucket:
        settings = self._settings
        return s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,  # archived logs outlive the stack
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="build-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="archive-tiering",
                    prefix=ARCHIVE_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(settings.archive_transition_days),
                        )
                    ],
                    expiration=Duration.days(settings.archive_expiration_days),
                ),
                s3.LifecycleRule(
                    id="sources-expiry",
                    prefix=SOURCES_PREFIX,
                    expiration=Duration.days(settings.sources_expiration_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )

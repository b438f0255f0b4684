"""Archival: when an execution ends, the archiver writes the build's log to S3.

EventBridge rule (the "Step Functions Execution Status Change" event of this state machine, terminal
statuses only) → archiver, with a retry policy and an SQS DLQ; the archiver's own async-invoke
failures land in the same DLQ. Those events are delivered best effort, so an EventBridge Scheduler
schedule also runs the archiver's sweep every 15 minutes (it lists recently ended executions).
"""

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from buildlogs.statuses import TERMINAL
from infra.common import Network, python_function, suppress
from infra.config import StackSettings
from infra.constants import (
    ARCHIVE_PREFIX,
    ARCHIVER_FUNCTION,
    ENV_ARCHIVE_SWEEP_LOOKBACK_MINUTES,
    ENV_E2B_API_KEY_SECRET_ARN,
    ENV_LOG_ARCHIVE_BUCKET,
    ENV_SANDBOX_RUNTIME,
    ENV_STATE_MACHINE_ARN,
    SANDBOX_RUNTIME_E2B,
    SFN_EVENT_DETAIL_TYPE,
    SFN_EVENT_SOURCE,
    SWEEP_EVENT,
    SWEEP_RATE_MINUTES,
)
from infra.iam import execution_arn, list_prefixes

SWEEP_LOOKBACK_MINUTES = 120  # 8 sweeps: an execution is retried by several sweeps before it ages out


class Archive(Construct):
    """``function`` (the archiver), ``rule``, ``dead_letter_queue``, ``schedule``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        layer: lambda_.ILayerVersion,
        network: Network,
        bucket: s3.IBucket,
        state_machine: sfn.StateMachine,
        e2b_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._bucket = bucket
        self._state_machine = state_machine
        self.dead_letter_queue = self._build_dead_letter_queue()
        self.function = self._build_function(layer, network, e2b_secret)
        self.rule = self._build_rule()
        self.schedule = self._build_schedule()

    def _build_dead_letter_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        suppress(queue, [("AwsSolutions-SQS3", "This queue is the archiver's dead-letter queue itself")])
        return queue

    def _build_function(
        self, layer: lambda_.ILayerVersion, network: Network, e2b_secret: secretsmanager.ISecret
    ) -> lambda_.Function:
        archive_bucket = self._bucket.bucket_name if self._settings.archive_enabled else ""
        function = python_function(
            self,
            "Archiver",
            code_dir=ARCHIVER_FUNCTION,
            description="buildlogs archiver: a finished build's log stream to S3 (event or sweep)",
            timeout_seconds=300,
            memory_mb=1024,
            layer=layer,
            network=network,
            settings=self._settings,
            environment={
                ENV_LOG_ARCHIVE_BUCKET: archive_bucket,  # empty: archival skipped, as the setting says
                ENV_STATE_MACHINE_ARN: self._state_machine.state_machine_arn,
                ENV_ARCHIVE_SWEEP_LOOKBACK_MINUTES: str(SWEEP_LOOKBACK_MINUTES),
                # it kills the sandbox of a TIMED_OUT or ABORTED run (those never reach Cleanup)
                ENV_SANDBOX_RUNTIME: SANDBOX_RUNTIME_E2B,
                ENV_E2B_API_KEY_SECRET_ARN: e2b_secret.secret_arn,
            },
        )
        function.configure_async_invoke(
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        e2b_secret.grant_read(function)
        self._grant_state_machine(function)
        if self._settings.archive_enabled:
            self._grant_archive(function)
        return function

    def _grant_state_machine(self, function: lambda_.Function) -> None:
        # the sweep lists this machine's recent executions; nothing else
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["states:ListExecutions"], resources=[self._state_machine.state_machine_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution"],
                resources=[execution_arn(self, self._state_machine)],
            )
        )

    def _grant_archive(self, function: lambda_.Function) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                resources=[self._bucket.arn_for_objects(f"{ARCHIVE_PREFIX}*")],
            )
        )
        # a missing archive must be a 404 (not a 403) for the idempotency check
        function.add_to_role_policy(list_prefixes(self._bucket, ARCHIVE_PREFIX))

    def _build_rule(self) -> events.Rule:
        rule = events.Rule(
            self,
            "ExecutionEnded",
            description="buildlogs: an execution of the build state machine ended -> archive its log",
            event_pattern=events.EventPattern(
                source=[SFN_EVENT_SOURCE],
                detail_type=[SFN_EVENT_DETAIL_TYPE],
                detail={
                    "status": [str(status) for status in TERMINAL],
                    "stateMachineArn": [self._state_machine.state_machine_arn],
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=8,
                max_event_age=Duration.hours(24),
            )
        )
        return rule

    def _build_schedule(self) -> scheduler.CfnSchedule:
        role = iam.Role(
            self,
            "SweepScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description="EventBridge Scheduler: invoke the buildlogs archiver's sweep",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])
        )
        self.dead_letter_queue.grant_send_messages(role)
        return scheduler.CfnSchedule(
            self,
            "SweepSchedule",
            description="buildlogs: archive any ended build whose status-change event was lost",
            schedule_expression=f"rate({SWEEP_RATE_MINUTES} minutes)",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=role.role_arn,
                input=json.dumps(SWEEP_EVENT),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=2, maximum_event_age_in_seconds=600
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            ),
        )

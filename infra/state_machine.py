"""The build state machine (STANDARD), built from the stage registry — the definition both AWS and
the local run execute.

    Provision ─► Scaffold ─► Install ─► Build ─► Start ─► HealthCheck ─► Succeeded
        └──── any failure (Catch States.ALL, error kept at $.error) ──► Cleanup ─► Failed

Each task invokes its stage function with the execution state as payload; the function returns the
next execution state (``{build_id, spec_ref, sandbox_id, preview_url}``, the stage output model),
and only that payload travels on (payload_response_only: no Lambda response envelope).
"""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from buildlogs.pipeline.stages import CLEANUP, PIPELINE, Stage
from infra.common import retention_days
from infra.config import StackSettings
from infra.constants import FAILURE_RESULT_PATH, LAMBDA_SERVICE_ERRORS

SUCCEEDED_STATE = "Succeeded"
FAILED_STATE = "Failed"
CLEANUP_FAILURE_RESULT_PATH = "$.cleanup_error"


class BuildStateMachine(Construct):
    """``state_machine``: one LambdaInvoke per registry stage, retries, Catch → Cleanup → Fail."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StackSettings,
        functions: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._functions = functions
        self.state_machine = self._build_state_machine(self._build_definition())

    def _build_task(self, stage: Stage, result_path: str | None = None) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            stage.state,
            lambda_function=self._functions[stage.name],
            result_path=result_path,
            payload_response_only=True,  # the state is the function's return value, no envelope
            retry_on_service_exceptions=False,  # the Retry below names exactly what is retried
            comment=stage.label,
        )
        task.add_retry(
            errors=[*LAMBDA_SERVICE_ERRORS, *stage.retryable_errors],
            interval=Duration.seconds(self._settings.retry_interval_seconds),
            max_attempts=self._settings.retry_max_attempts,
            backoff_rate=self._settings.retry_backoff_rate,
        )
        return task

    def _build_definition(self) -> sfn.IChainable:
        failed = sfn.Fail(
            self,
            FAILED_STATE,
            comment="A stage failed; the original error is at $.error",
            error_path=f"{FAILURE_RESULT_PATH}.Error",
            cause_path=f"{FAILURE_RESULT_PATH}.Cause",
        )
        # Cleanup keeps its input (the state + the original error) as its output, and its own
        # failure still ends the run in Failed with the original error.
        cleanup = self._build_task(CLEANUP, result_path=sfn.JsonPath.DISCARD)
        cleanup.add_catch(failed, errors=[sfn.Errors.ALL], result_path=CLEANUP_FAILURE_RESULT_PATH)
        on_failure = cleanup.next(failed)

        chain: sfn.Chain | None = None
        for stage in PIPELINE:
            task = self._build_task(stage)
            task.add_catch(on_failure, errors=[sfn.Errors.ALL], result_path=FAILURE_RESULT_PATH)
            chain = sfn.Chain.start(task) if chain is None else chain.next(task)
        assert chain is not None, "the stage registry has no pipeline stage"
        return chain.next(sfn.Succeed(self, SUCCEEDED_STATE))

    def _build_state_machine(self, definition: sfn.IChainable) -> sfn.StateMachine:
        log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            retention=retention_days(self._settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.minutes(self._settings.execution_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group,
                level=sfn.LogLevel.ERROR,
                include_execution_data=False,  # execution data may hold secrets: never logged
            ),
        )

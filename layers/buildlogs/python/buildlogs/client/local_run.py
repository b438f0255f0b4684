"""A whole build on this machine, exactly as AWS runs it: the deployed state machine, the real handlers.

:class:`LocalStack` is the pipeline of ``cdk deploy`` hosted in one process:

- **Step Functions**: moto's interpreter runs the definition the stack ships (``infra.definition``,
  cached under ``.buildlogs/cache`` by a hash of its inputs); each Lambda task is routed in-process
  to ``functions.stage.handler`` with that function's ``STAGE`` (:mod:`buildlogs.client.moto_hook`).
- **S3**: moto S3 holds the sources and the archive in one bucket, as the stack does; the archive
  is copied to ``.buildlogs/archive/build-logs/{id}/`` when a run ends. With ``SOURCES_BUCKET`` or
  ``LOG_ARCHIVE_BUCKET`` set, S3 calls go to the real service (moto passes S3 through).
- **Redis**: ``REDIS_URL``, or an embedded in-memory server.
- **Sandboxes**: ``LocalSandboxRuntime`` (subprocesses), or E2B with ``sandbox="e2b"``.
- **EventBridge**: moto emits no events, so :meth:`LocalStack.wait` builds the "Step Functions
  Execution Status Change" event AWS sends and calls ``functions.archiver.handler`` with it.
- **API Gateway**: the API Lambda behind :mod:`buildlogs.client.local_api` on 127.0.0.1.
- **CloudWatch Logs**: the functions' own log lines go to ``.buildlogs/functions.log``.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.request import Request, urlopen

from buildlogs.client import embedded
from buildlogs.client.local_api import LocalLambdaContext, serve
from buildlogs.client.moto_hook import TaskFailed, route_lambda_tasks, wait_for_executions
from buildlogs.keys import archive_key, index_key, validate_build_id
from buildlogs.pipeline.models import BuildSpec
from buildlogs.settings import Settings, apply_environment, get_settings
from buildlogs.statuses import TERMINAL, ExecutionStatus

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

LOCAL_BUCKET = "buildlogs-local"  # sources and archive, one bucket as in the stack
STATE_MACHINE_NAME = "buildlogs-local"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/buildlogs-local-state-machine"
POLL_INTERVAL_S = 0.02  # describe_execution is in-process: cheap
EXECUTION_DRAIN_S = 30.0  # at exit, how long a stopped execution's running task may take to return
STATUS_CHANGE = "Step Functions Execution Status Change"


@dataclass(frozen=True)
class LocalRunConfig:
    """What a local run may choose; everything else is the stack's own configuration."""

    workdir: Path = Path(".buildlogs")
    sandbox: str = "local"  # local | e2b (E2B_API_KEY)
    api_port: int = 0  # 0: a free port
    context: Mapping[str, Any] = field(default_factory=dict)  # CDK context overrides (e.g. retry intervals)
    cache_dir: Path | None = None  # the synthesized definition's cache (default: workdir/cache)


def definition_inputs() -> list[Path]:
    """Every file the synthesized definition depends on: the CDK app, cdk.json and the stage registry."""
    from buildlogs.pipeline import stages
    from infra import constants

    infra_dir = Path(constants.__file__).parent
    return sorted([*infra_dir.glob("*.py"), constants.ROOT / "cdk.json", Path(stages.__file__)])


def cached_definition(cache_dir: Path, context: Mapping[str, Any]) -> str:
    """The deployed definition as ASL JSON, synthesized (~10 s) only when its inputs changed."""
    digest = hashlib.sha256(json.dumps(sorted(context.items()), default=str).encode())
    digest.update(version("aws-cdk-lib").encode())
    for path in definition_inputs():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    cached = cache_dir / f"definition-{digest.hexdigest()[:16]}.json"
    if cached.is_file():
        return cached.read_text()
    from infra.definition import state_machine_definition_json

    text = state_machine_definition_json(dict(context))
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    return text


def status_change_event(described: Mapping[str, Any]) -> dict[str, Any]:
    """The EventBridge event AWS sends when an execution ends (same shape as tests/events' sample)."""

    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    arn = str(described["executionArn"])
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": STATUS_CHANGE,
        "source": "aws.states",
        "account": arn.split(":")[4],
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": arn.split(":")[3],
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": described["stateMachineArn"],
            "name": described["name"],
            "status": described["status"],
            "startDate": millis(described.get("startDate")),
            "stopDate": millis(described.get("stopDate")),
            "input": described.get("input"),
            "inputDetails": {"included": True},
            "output": described.get("output"),
            "outputDetails": {"included": True} if described.get("output") is not None else None,
            "error": described.get("error"),
            "cause": described.get("cause"),
            "redriveCount": 0,
        },
    }


def stage_of(function_name: str) -> str:
    """``arn:…:function:buildlogs-install`` → ``install`` (the function's ``STAGE``)."""
    from infra.constants import SERVICE_NAME

    name = function_name.rsplit(":", 1)[-1]
    prefix = f"{SERVICE_NAME}-"
    if not name.startswith(prefix):
        raise TaskFailed("ResourceNotFoundException", f"no such function: {function_name}")
    return name[len(prefix) :]


class LocalStack:
    """The deployed pipeline in this process; use it as a context manager."""

    def __init__(self, config: LocalRunConfig | None = None) -> None:
        self.config = config or LocalRunConfig()
        self.api_url = ""
        self.state_machine_arn = ""
        self._exits = contextlib.ExitStack()
        self._invoke_lock = threading.Lock()
        self._sfn: SFNClient | None = None
        self._s3: S3Client | None = None
        self._bucket = ""
        self._archive_bucket = ""
        self.task_calls = 0
        self._sandboxes: set[str] = set()  # reaped when the stack stops (a succeeded build's dev server)
        self._cancelled: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> "LocalStack":
        try:
            self._start()
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exits.close()

    def _start(self) -> None:
        import boto3
        from moto import mock_aws
        from moto.core.config import DefaultConfig

        workdir = self.config.workdir.resolve()
        user = get_settings()
        definition = cached_definition(self.config.cache_dir or workdir / "cache", self.config.context)
        real_s3 = bool(user.sources_bucket or user.log_archive_bucket)
        moto_config: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}
        if real_s3:
            moto_config["core"] = {"passthrough": {"services": ["s3"], "urls": []}}
        self._exits.enter_context(mock_aws(config=moto_config))
        embedded.install()
        self._log_functions_to(workdir / "functions.log")
        # The interpreter logs each failed state at ERROR (a repr of its ASL component): the build's
        # own output and the execution's error say it better.
        interpreter_log = logging.getLogger("moto.stepfunctions.parser")
        self._exits.callback(interpreter_log.setLevel, interpreter_log.level)
        interpreter_log.setLevel(logging.CRITICAL)
        # A function that published no metric says so on every invocation: noise on a terminal.
        warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
        self._sfn = boto3.client("stepfunctions", region_name=REGION)
        self._s3 = boto3.client("s3", region_name=REGION)
        self._bucket = user.sources_bucket or LOCAL_BUCKET
        self._archive_bucket = user.log_archive_bucket or self._bucket
        for bucket in {self._bucket, self._archive_bucket} - {user.sources_bucket, user.log_archive_bucket}:
            self._s3.create_bucket(Bucket=bucket)
        self.state_machine_arn = self._sfn.create_state_machine(
            name=STATE_MACHINE_NAME, definition=definition, roleArn=ROLE_ARN, type="STANDARD"
        )["stateMachineArn"]
        previous = apply_environment(self._lambda_environment(user))
        self._exits.callback(apply_environment, previous)
        from buildlogs import clients

        clients.s3_client.cache_clear()  # the handlers' clients are made inside this moto context
        clients.sfn_client.cache_clear()
        self._exits.callback(clients.s3_client.cache_clear)
        self._exits.callback(clients.sfn_client.cache_clear)
        self._exits.enter_context(route_lambda_tasks(self._invoke_stage))
        # At exit (last registered, first run): stop every sandbox, so a task still running returns;
        # then let the interpreter's threads end while the hook and the mock are still in place.
        self._exits.callback(wait_for_executions, EXECUTION_DRAIN_S)
        self._exits.callback(self._reap_sandboxes)
        from functions.api.handler import lambda_handler as api_handler

        self.api_url = self._exits.enter_context(serve(api_handler, self.config.api_port))

    def _log_functions_to(self, path: Path) -> None:
        """The functions' own log lines go to a file, as Lambda's go to CloudWatch Logs: the
        terminal (and ``--json``'s stdout) shows the build's log only."""
        from buildlogs.observability import logger

        handler = logger.registered_handler
        if not isinstance(handler, logging.StreamHandler):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        file = self._exits.enter_context(path.open("a", encoding="utf-8"))
        previous = handler.setStream(file)
        self._exits.callback(handler.setStream, previous)

    def _lambda_environment(self, user: Settings) -> dict[str, str | None]:
        """What the stack sets on its functions, pointed at the local stores (STAGE: per task)."""
        return {
            "STAGE": None,
            "AWS_DEFAULT_REGION": REGION,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "SOURCES_BUCKET": self._bucket,
            "LOG_ARCHIVE_BUCKET": self._archive_bucket,
            "SANDBOX_RUNTIME": self.config.sandbox,
            "REDIS_URL": user.redis_url,
            "POWERTOOLS_SERVICE_NAME": "buildlogs",
            "POWERTOOLS_METRICS_NAMESPACE": "buildlogs-local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",  # no EMF lines on the terminal
        }

    # -- the Lambda functions -------------------------------------------------------------------

    def _invoke_stage(self, function_name: str, payload: dict[str, Any]) -> Any:
        """One stage task: the stage Lambda with that function's environment (one at a time)."""
        stage = stage_of(function_name)
        from functions.stage.handler import lambda_handler

        with self._invoke_lock:
            self.task_calls += 1
            apply_environment({"STAGE": stage})
            try:
                result = lambda_handler(payload, LocalLambdaContext(f"buildlogs-{stage}"))
            except Exception as exc:  # Lambda reports the exception's class name as errorType
                if payload.get("build_id") in self._cancelled:
                    # The execution was stopped while this task ran: in AWS it is ABORTED whatever
                    # the task returns; moto would record a late error as FAILED, so report none.
                    return payload
                raise TaskFailed(type(exc).__name__, str(exc)) from None
        if isinstance(result, dict) and result.get("sandbox_id"):
            self._sandboxes.add(str(result["sandbox_id"]))
        return result

    def _reap_sandboxes(self) -> None:
        """Nothing outlives the run: stop each sandbox a build left running (kill is idempotent)."""
        from buildlogs.pipeline.sandbox import kill_sandbox

        async def reap() -> None:
            for sandbox_id in sorted(self._sandboxes):
                await kill_sandbox(sandbox_id)

        asyncio.run(reap())

    # -- builds ---------------------------------------------------------------------------------

    def submit(self, spec: BuildSpec) -> str:
        """``POST /builds`` through the local API (the deployed API's code); the build id."""
        body = spec.model_dump_json(exclude_none=True).encode("utf-8")
        request = Request(  # noqa: S310 (our own http://127.0.0.1 API)
            f"{self.api_url}builds", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urlopen(request, timeout=30) as response:  # noqa: S310
            answer = json.loads(response.read())
        return validate_build_id(answer["build_id"])

    def execution_arn(self, build_id: str) -> str:
        prefix, _, name = self.state_machine_arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{name}:{validate_build_id(build_id)}"

    def describe(self, build_id: str) -> dict[str, Any]:
        assert self._sfn is not None
        return dict(self._sfn.describe_execution(executionArn=self.execution_arn(build_id)))

    def wait(self, build_id: str) -> str:
        """Block until the execution ends, archive it as EventBridge + the archiver would; its status."""
        while True:
            described = self.describe(build_id)
            if described["status"] in TERMINAL:
                break
            time.sleep(POLL_INTERVAL_S)
        self._archive(described)
        return str(described["status"])

    def cancel(self, build_id: str) -> None:
        """``StopExecution``, then what AWS does at once: the ABORTED event reaches the archiver.

        In AWS the execution is ABORTED immediately while its running stage Lambda goes on; moto
        reports ABORTED only once the running task returns. So the status-change event is sent
        now, as AWS would: the archiver closes the log and reaps the sandbox (the running command
        dies, the stage's late lines fall after ``end`` and are discarded, as in AWS).
        """
        assert self._sfn is not None
        self._cancelled.add(build_id)
        self._sfn.stop_execution(executionArn=self.execution_arn(build_id), cause="cancelled from the local run")
        described = self.describe(build_id)
        if described["status"] not in TERMINAL:
            described.update(status=ExecutionStatus.ABORTED.value, stopDate=datetime.now(UTC))
        self._archive(described)

    def _archive(self, described: dict[str, Any]) -> None:
        from functions.archiver.handler import lambda_handler as archiver_handler

        archiver_handler(status_change_event(described), LocalLambdaContext("buildlogs-archiver"))
        self._copy_archive(str(described["name"]))

    def archive_path(self, build_id: str) -> Path:
        return self.config.workdir / "archive" / archive_key(build_id)

    def _copy_archive(self, build_id: str) -> None:
        assert self._s3 is not None
        for key in (archive_key(build_id), index_key(build_id)):
            target = self.config.workdir / "archive" / key
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(self._s3.exceptions.NoSuchKey):
                body = self._s3.get_object(Bucket=self._archive_bucket, Key=key)["Body"]
                with target.open("wb") as file:
                    shutil.copyfileobj(body, file)


@contextlib.contextmanager
def local_stack(config: LocalRunConfig | None = None) -> Iterator[LocalStack]:
    """``with local_stack() as stack:`` — the same as ``with LocalStack(config) as stack:``."""
    with LocalStack(config) as stack:
        yield stack

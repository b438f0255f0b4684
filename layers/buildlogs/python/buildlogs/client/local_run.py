"""A whole build on this machine, exactly as AWS runs it: the deployed state machine, the real handlers.

:class:`LocalStack` is the pipeline of ``cdk deploy`` hosted in one process:

- **Step Functions**: moto's interpreter runs the definition the stack ships (``infra.definition``,
  cached under ``.buildlogs/cache`` by a hash of its inputs); each Lambda task is routed in-process
  to ``functions.stage.handler`` with that function's ``STAGE`` (:mod:`buildlogs.client.moto_hook`).
- **S3**: moto S3 holds the sources and the archive in one bucket, as the stack does; the archive
  is copied to ``.buildlogs/archive/build-logs/{id}/`` when a run ends. With ``SOURCES_BUCKET`` and
  ``LOG_ARCHIVE_BUCKET`` set (both, or neither), S3 calls go to the real service with the caller's
  own credentials (moto passes S3 through) and no bucket is created.
- **Redis**: ``REDIS_URL`` (it must answer when the stack starts), or an embedded in-memory server.
- **Sandboxes**: ``LocalSandboxRuntime`` (subprocesses), or E2B with ``sandbox="e2b"``.
- **EventBridge**: moto emits no events, so :meth:`LocalStack.wait` builds the "Step Functions
  Execution Status Change" event AWS sends and calls ``functions.archiver.handler`` with it (once
  per build: a build :meth:`LocalStack.cancel` already archived is not archived again).
- **API Gateway**: the API Lambda behind :mod:`buildlogs.client.local_api` on 127.0.0.1. Its
  ``StopExecution`` (``POST /builds/{id}/cancel``) is :meth:`LocalStack.cancel`, as Ctrl-C's is.
- **CloudWatch Logs**: the functions' own log lines (Powertools', and any stdlib ``buildlogs.*``
  logger's) go to ``.buildlogs/functions.log``.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from buildlogs.api.builds import execution_arn
from buildlogs.client import embedded
from buildlogs.client.local_api import LocalLambdaContext, serve
from buildlogs.client.moto_hook import HookCalls, TaskFailed, route_lambda_tasks, wait_for_executions
from buildlogs.keys import archive_key, index_key, logs_key, validate_build_id
from buildlogs.pipeline.models import BuildSpec
from buildlogs.settings import Settings, apply_environment, get_settings
from buildlogs.statuses import TERMINAL, ExecutionStatus

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

LOCAL_BUCKET = "buildlogs-local"  # sources and archive, one bucket as in the stack
STATE_MACHINE_NAME = "buildlogs-local"
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/buildlogs-local-state-machine"
POLL_INTERVAL_S = 0.02  # describe_execution is in-process: cheap
EXECUTION_DRAIN_S = 30.0  # at exit, how long a stopped execution's running task may take to return
# How long wait() waits for an execution by default: the state machine's own timeout (infra/config.py
# execution_timeout_minutes = 180) and some margin; a run that outlives it is stuck, not slow.
WAIT_TIMEOUT_S = (180 + 10) * 60.0
STATUS_CHANGE = "Step Functions Execution Status Change"
CANCEL_CAUSE = "cancelled from the local run"


class LocalStackError(RuntimeError):
    """The local stack cannot start as configured (the message says why and what to change)."""


@dataclass(frozen=True)
class LocalRunConfig:
    """What a local run may choose; everything else is the stack's own configuration."""

    workdir: Path = Path(".buildlogs")
    sandbox: str = "local"  # local | e2b (E2B_API_KEY)
    api_port: int = 0  # 0: a free port
    context: Mapping[str, Any] = field(default_factory=dict)  # CDK context overrides (e.g. retry intervals)
    cache_dir: Path | None = None  # the synthesized definition's cache (default: workdir/cache)
    wait_timeout_s: float = WAIT_TIMEOUT_S  # LocalStack.wait raises TimeoutError after this long


def moto_config(sources_bucket: str, log_archive_bucket: str) -> "DefaultConfig":
    """moto's configuration for a local run: the Step Functions interpreter, and S3 local or real.

    Real S3 (both buckets set) is passed through with the caller's own credentials: moto's fake
    ones (``mock_credentials``) would make every real call fail. One bucket alone is refused: the
    other would be created in moto while the stack's functions expect both in one place.
    """
    if bool(sources_bucket) != bool(log_archive_bucket):
        given, missing = (
            ("SOURCES_BUCKET", "LOG_ARCHIVE_BUCKET") if sources_bucket else ("LOG_ARCHIVE_BUCKET", "SOURCES_BUCKET")
        )
        raise LocalStackError(
            f"{given} is set but {missing} is not: set both (real S3) or neither (S3 in this process)"
        )
    config: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}
    if sources_bucket:
        config["core"] = {"mock_credentials": False, "passthrough": {"services": ["s3"], "urls": []}}
    return config


def redacted_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host``), for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # host[:port] as written (an IPv6 address keeps its brackets)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redis_location(redis_url: str) -> str:
    """Where the stack's Redis is, in words: ``Redis at redis://…`` or the embedded one."""
    return f"Redis at {redacted_url(redis_url)}" if redis_url else "the embedded Redis (REDIS_URL is not set)"


def check_redis(settings: Settings) -> None:
    """Ping the Redis the functions will use (the same client factory); :class:`LocalStackError` if it
    does not answer, so a wrong ``REDIS_URL`` stops the run before any build starts."""
    from redis.exceptions import RedisError

    from buildlogs import clients

    async def ping() -> None:
        client = clients.create_redis(settings)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError) as exc:
        raise LocalStackError(f"{redis_location(settings.redis_url)} does not answer: {exc}") from None


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
            "redriveCount": described.get("redriveCount", 0),
            "redriveStatus": described.get("redriveStatus") or redrive_status(str(described["status"])),
            "redriveStatusReason": described.get("redriveStatusReason")
            or redrive_status_reason(str(described["status"])),
        },
    }


def redrive_status(status: str) -> str:
    """What AWS says of an ended execution: a failed, timed-out or aborted one may be redriven."""
    return "NOT_REDRIVABLE" if status == ExecutionStatus.SUCCEEDED.value else "REDRIVABLE"


def redrive_status_reason(status: str) -> str | None:
    return f"Execution is {status} and cannot be redriven" if redrive_status(status) == "NOT_REDRIVABLE" else None


def stage_of(function_name: str) -> str:
    """``arn:…:function:buildlogs-install`` → ``install`` (the function's ``STAGE``)."""
    from infra.constants import SERVICE_NAME

    name = function_name.rsplit(":", 1)[-1]
    prefix = f"{SERVICE_NAME}-"
    if not name.startswith(prefix):
        raise TaskFailed("ResourceNotFoundException", f"no such function: {function_name}")
    return name[len(prefix) :]


@dataclass
class _Archival:
    """One build's archival (the status-change event through the archiver): done once, by whoever claims it."""

    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


class _StopThroughStack:
    """The API's Step Functions client in a local run: moto's, except ``stop_execution``.

    ``POST /builds/{id}/cancel`` calls StopExecution; in a local run that is the stack's cancel, so
    a build cancelled through the API ends as in AWS (ABORTED at once, log closed, sandbox reaped),
    exactly as Ctrl-C's cancel does. Every other call goes to moto's client unchanged.
    """

    def __init__(self, client: "SFNClient", stop: Callable[..., Any]) -> None:
        self._client = client
        self._stop = stop

    def stop_execution(self, *, executionArn: str, error: str | None = None, cause: str | None = None) -> Any:
        return self._stop(executionArn, error=error, cause=cause)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


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
        self._redis_url = ""
        self.task_calls = 0
        self.hook_calls = HookCalls()  # what moto routed through the hook (the one in use once started)
        self._sandboxes: set[str] = set()  # reaped when the stack stops (a succeeded build's dev server)
        self._cancelled: set[str] = set()
        self._archive_lock = threading.Lock()
        self._archivals: dict[str, _Archival] = {}

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

        workdir = self.config.workdir.resolve()
        user = get_settings()
        moto_settings = moto_config(user.sources_bucket, user.log_archive_bucket)  # both buckets, or neither
        real_s3 = bool(user.sources_bucket)
        embedded.install()
        self._exits.callback(embedded.uninstall)
        check_redis(user)
        self._redis_url = user.redis_url
        definition = cached_definition(self.config.cache_dir or workdir / "cache", self.config.context)
        self._exits.enter_context(mock_aws(config=moto_settings))
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
        self._archive_bucket = user.log_archive_bucket or LOCAL_BUCKET
        if not real_s3:  # real buckets are the user's: used, never created here
            self._s3.create_bucket(Bucket=LOCAL_BUCKET)
        self.state_machine_arn = self._sfn.create_state_machine(
            name=STATE_MACHINE_NAME, definition=definition, roleArn=ROLE_ARN, type="STANDARD"
        )["stateMachineArn"]
        previous = apply_environment(self._lambda_environment(user))
        self._exits.callback(apply_environment, previous)
        from buildlogs import clients
        from buildlogs.api.deps import deps

        clients.s3_client.cache_clear()  # the handlers' clients are made inside this moto context
        clients.sfn_client.cache_clear()
        self._exits.callback(clients.s3_client.cache_clear)
        self._exits.callback(clients.sfn_client.cache_clear)
        self._exits.callback(setattr, deps, "sfn", deps.sfn)
        deps.sfn = cast("SFNClient", _StopThroughStack(self._sfn, self._stop_execution))
        self.hook_calls = self._exits.enter_context(route_lambda_tasks(self._invoke_stage))
        # At exit (last registered, first run): stop every sandbox, so a task still running returns;
        # then let the interpreter's threads end while the hook and the mock are still in place.
        self._exits.callback(self._drain_executions)
        self._exits.callback(self._reap_sandboxes)
        from functions.api.handler import lambda_handler as api_handler

        self.api_url = self._exits.enter_context(serve(api_handler, self.config.api_port))

    def _log_functions_to(self, path: Path) -> None:
        """The functions' own log lines go to a file, as Lambda's go to CloudWatch Logs: the
        terminal (and ``--json``'s stdout) shows the build's log only.

        Powertools' handler is pointed at the file; records of stdlib loggers under ``buildlogs``
        (which would otherwise reach the terminal through logging's last-resort handler) are
        written there too, in the same format, and kept from propagating further.
        """
        from buildlogs.observability import logger

        path.parent.mkdir(parents=True, exist_ok=True)
        file = self._exits.enter_context(path.open("a", encoding="utf-8"))
        handler = logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            previous = handler.setStream(file)
            self._exits.callback(handler.setStream, previous)
        package = logging.getLogger("buildlogs")
        self._exits.callback(setattr, package, "propagate", package.propagate)
        package.propagate = False
        if handler is not None and any(h is handler for h in package.handlers):
            return  # POWERTOOLS_SERVICE_NAME=buildlogs: Powertools' own logger, already redirected
        stdlib = logging.StreamHandler(file)
        if handler is not None and handler.formatter is not None:
            stdlib.setFormatter(handler.formatter)
        package.addHandler(stdlib)
        self._exits.callback(package.removeHandler, stdlib)

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
            finally:
                _drop_unpublished_metrics()
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

    def _drain_executions(self) -> None:
        """Let the interpreter's threads end before the mock goes; say so (in the functions' log) if
        one did not: leaving the mock while it runs would let it call real AWS."""
        if not wait_for_executions(EXECUTION_DRAIN_S):
            from buildlogs.observability import logger

            logger.warning(
                "an execution was still running when the local stack stopped",
                extra={"waited_s": EXECUTION_DRAIN_S},
            )

    # -- builds ---------------------------------------------------------------------------------

    def submit(self, spec: BuildSpec) -> str:
        """``POST /builds`` through the local API (the deployed API's code); the build id.

        A client-chosen ``build_id`` whose log is already in Redis (an earlier run of the same
        SPEC.json against the same ``REDIS_URL``) is refused with a ``ValueError``: the new build
        would append to, and its followers replay, the old log.
        """
        if spec.build_id and self._log_exists(spec.build_id):
            raise ValueError(
                f"build {spec.build_id} already has a log in {redis_location(self._redis_url)}: "
                "choose another build_id (or leave it out)"
            )
        # An iteration request sends what it sets, nothing more (unset fields are the earlier build's).
        body = spec.model_dump_json(exclude_none=True, exclude_unset=spec.is_iteration).encode("utf-8")
        request = Request(  # noqa: S310 (our own http://127.0.0.1 API)
            f"{self.api_url}builds", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urlopen(request, timeout=30) as response:  # noqa: S310
            answer = json.loads(response.read())
        return validate_build_id(answer["build_id"])

    def _log_exists(self, build_id: str) -> bool:
        from buildlogs import clients

        async def exists() -> bool:
            client = clients.create_redis()
            try:
                return bool(await client.exists(logs_key(build_id)))
            finally:
                await client.aclose()

        return asyncio.run(exists())

    def describe(self, build_id: str) -> dict[str, Any]:
        assert self._sfn is not None
        return dict(self._sfn.describe_execution(executionArn=execution_arn(self.state_machine_arn, build_id)))

    def wait(self, build_id: str, timeout: float | None = None) -> str:
        """Block until the execution ends, archive it as EventBridge + the archiver would; its status.

        A build already archived (by :meth:`cancel`) is not archived again. ``TimeoutError`` after
        ``timeout`` seconds (default: the config's ``wait_timeout_s``).
        """
        limit = self.config.wait_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            described = self.describe(build_id)
            if described["status"] in TERMINAL:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"build {build_id} is still {described['status']} after {limit:g} s")
            time.sleep(POLL_INTERVAL_S)
        self._archive_once(described, deadline)
        return str(described["status"])

    def cancel(self, build_id: str) -> None:
        """``StopExecution``, then what AWS does at once: the ABORTED event reaches the archiver.

        In AWS the execution is ABORTED immediately while its running stage Lambda goes on; moto
        reports ABORTED only once the running task returns. So the status-change event is sent
        now, as AWS would: the archiver closes the log and reaps the sandbox (the running command
        dies, the stage's late lines fall after ``end`` and are discarded, as in AWS). The local
        API's ``POST /builds/{id}/cancel`` comes here too.
        """
        self._stop(build_id, error=None, cause=CANCEL_CAUSE)

    def _stop_execution(self, arn: str, *, error: str | None = None, cause: str | None = None) -> Any:
        """The API's StopExecution: :meth:`_stop` for an execution of this stack's state machine."""
        build_id = arn.rpartition(":")[2]
        try:
            ours = execution_arn(self.state_machine_arn, build_id) == arn
        except ValueError:
            ours = False
        if ours:
            return self._stop(build_id, error=error, cause=cause)
        assert self._sfn is not None
        return self._sfn.stop_execution(executionArn=arn, **_present(error=error, cause=cause))

    def _stop(self, build_id: str, *, error: str | None, cause: str | None) -> Any:
        assert self._sfn is not None
        arn = execution_arn(self.state_machine_arn, build_id)
        self._cancelled.add(build_id)
        archival = self._claim_archival(build_id)  # before the stop: wait() must not archive it first
        try:
            response = self._sfn.stop_execution(executionArn=arn, **_present(error=error, cause=cause))
        except BaseException:
            if archival is not None:
                self._release_archival(build_id, archival)
            raise
        if archival is not None:  # None: already archived (it had ended), or being archived
            described = self.describe(build_id)
            if described["status"] not in TERMINAL:
                described.update(status=ExecutionStatus.ABORTED.value, stopDate=datetime.now(UTC))
                described.update(_present(error=error, cause=cause))
            self._run_archival(build_id, archival, described)
        return response

    # -- archival: once per build ---------------------------------------------------------------

    def _claim_archival(self, build_id: str) -> _Archival | None:
        with self._archive_lock:
            if build_id in self._archivals:
                return None
            archival = self._archivals[build_id] = _Archival()
            return archival

    def _release_archival(self, build_id: str, archival: _Archival) -> None:
        """A failed archival is forgotten, so a later :meth:`wait` tries again."""
        with self._archive_lock:
            if self._archivals.get(build_id) is archival:
                del self._archivals[build_id]
        archival.done.set()

    def _run_archival(self, build_id: str, archival: _Archival, described: dict[str, Any]) -> None:
        try:
            self._archive(described)
            archival.ok = True
        finally:
            if archival.ok:
                archival.done.set()
            else:
                self._release_archival(build_id, archival)

    def _archive_once(self, described: dict[str, Any], deadline: float) -> None:
        """Archive an ended build unless that is done, or being done (then wait for it)."""
        build_id = str(described["name"])
        while True:
            claimed = self._claim_archival(build_id)
            if claimed is not None:
                self._run_archival(build_id, claimed, described)
                return
            with self._archive_lock:
                pending = self._archivals.get(build_id)
            if pending is None:  # released (failed) in between: claim it again
                continue
            if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the archival of build {build_id} did not finish in time")
            if pending.ok:
                return

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


def _drop_unpublished_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED, Powertools never clears what it did not print: in one long-lived
    process (``run --watch``) the functions' metrics pile up until the 100th value of one metric fails
    a stage with SchemaValidationError. Each Lambda invocation starts clean in AWS; so here too."""
    from buildlogs.observability import metrics

    metrics.clear_metrics()


def _present(**values: str | None) -> dict[str, str]:
    """The keyword arguments that have a value (boto3 refuses ``None``)."""
    return {name: value for name, value in values.items() if value is not None}

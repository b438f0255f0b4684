"""Builds as Step Functions knows them: start (idempotent by build id), describe, list, cancel.

Step Functions is the source of truth for a run's state; the validated BuildSpec is stored in
S3 before the run starts. Clients (boto3 ``stepfunctions`` and ``s3``) come in as arguments.
Every build id is validated before it reaches an S3 key or an execution ARN.
"""

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from buildlogs.clients import error_code, is_not_found
from buildlogs.keys import spec_key, validate_build_id
from buildlogs.observability import tracer
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.spec_store import S3SpecStore, SpecAlreadyStored
from buildlogs.statuses import PENDING, ExecutionStatus

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient


class BuildNotFound(LookupError):
    """Neither Step Functions nor the spec store knows the build."""


class BuildConflict(Exception):
    """The build id is taken by another spec (409)."""


class BuildNotRunning(Exception):
    """The build has already finished: it cannot be cancelled (409)."""


class InvalidPageToken(ValueError):
    """A ``next`` token that this API did not issue."""


@dataclass(frozen=True, slots=True)
class Execution:
    """The parts of a Step Functions execution the API shows (never its input or cause)."""

    build_id: str
    status: str
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    input: dict[str, Any] | None = None  # the execution input (build_id, spec_ref; an iteration's iterate_from)


def execution_arn(state_machine_arn: str, build_id: str) -> str:
    """``arn:…:stateMachine:X`` → ``arn:…:execution:X:{build_id}`` (the id validated first)."""
    validate_build_id(build_id)
    prefix, sep, name = state_machine_arn.rpartition(":stateMachine:")
    if not sep or not prefix.startswith("arn:") or not name:
        raise ValueError("STATE_MACHINE_ARN is not a state machine ARN")
    return f"{prefix}:execution:{name}:{build_id}"


def new_build_id() -> str:
    """A fresh build id matching ``BUILD_ID_PATTERN``."""
    return validate_build_id(f"b-{uuid.uuid4().hex}")


@tracer.capture_method(capture_response=False)
def submit_build(
    sfn: "SFNClient",
    s3: "S3Client",
    *,
    state_machine_arn: str,
    bucket: str,
    spec: BuildSpec,
    execution_input: Mapping[str, str] | None = None,
) -> str:
    """Store ``spec`` and start its execution; return the build id.

    ``execution_input``: more keys of the execution input (an iteration's ``sandbox_id`` and ``iterate_from``).

    Idempotent: the spec is written only if no spec exists for the id (S3 conditional write,
    so two racing requests cannot both win); a stored spec that differs raises
    :class:`BuildConflict`. An execution that already exists for an equal spec is the same build.
    """
    build_id = spec.build_id or new_build_id()
    spec = spec.model_copy(update={"build_id": build_id})
    store = S3SpecStore(bucket, s3)
    try:
        spec_ref = store.save(build_id, spec)
    except SpecAlreadyStored:
        spec_ref = f"s3://{bucket}/{spec_key(build_id)}"
        if store.load(spec_ref, build_id) != spec:
            raise BuildConflict(f"build {build_id} already exists with another spec") from None
    try:
        sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=build_id,
            input=json.dumps({**(execution_input or {}), "build_id": build_id, "spec_ref": spec_ref}),
        )
    except ClientError as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
    return build_id


def find_execution(sfn: "SFNClient", state_machine_arn: str, build_id: str) -> Execution | None:
    """The build's execution, or ``None`` when Step Functions does not know it."""
    try:
        described = sfn.describe_execution(executionArn=execution_arn(state_machine_arn, build_id))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return Execution(
        build_id=build_id,
        status=str(described["status"]),
        started_at=described.get("startDate"),
        stopped_at=described.get("stopDate"),
        output=_json_object(described.get("output")),
        error=described.get("error"),
        input=_json_object(described.get("input")),
    )


def spec_exists(s3: "S3Client", bucket: str, build_id: str) -> bool:
    """Whether the build's spec is stored (a build whose execution failed to start)."""
    try:
        s3.head_object(Bucket=bucket, Key=spec_key(build_id))
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


@tracer.capture_method(capture_response=False)
def get_build(sfn: "SFNClient", s3: "S3Client", *, state_machine_arn: str, bucket: str, build_id: str) -> Execution:
    """The build's execution; ``PENDING`` if only its spec exists; :class:`BuildNotFound` otherwise."""
    execution = find_execution(sfn, state_machine_arn, build_id)
    if execution is not None:
        return execution
    if bucket and spec_exists(s3, bucket, build_id):
        return Execution(build_id=build_id, status=PENDING)
    raise BuildNotFound(build_id)


def build_exists(sfn: "SFNClient", s3: "S3Client", *, state_machine_arn: str, bucket: str, build_id: str) -> bool:
    try:
        get_build(sfn, s3, state_machine_arn=state_machine_arn, bucket=bucket, build_id=build_id)
    except BuildNotFound:
        return False
    return True


@tracer.capture_method(capture_response=False)
def list_builds(
    sfn: "SFNClient", state_machine_arn: str, *, limit: int, status: str | None = None, token: str | None = None
) -> tuple[list[Execution], str | None]:
    """One page of executions, newest first, and the opaque token of the next page."""
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": limit}
    if status:
        kwargs["statusFilter"] = status
    if token:
        kwargs["nextToken"] = _decode_token(token)
    try:
        page = sfn.list_executions(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "InvalidToken":
            raise InvalidPageToken("next is not a token this API issued") from None
        raise
    builds = [
        Execution(
            build_id=str(item["name"]),
            status=str(item["status"]),
            started_at=item.get("startDate"),
            stopped_at=item.get("stopDate"),
        )
        for item in page.get("executions", ())
    ]
    next_token = page.get("nextToken")
    return builds, _encode_token(next_token) if next_token else None


@tracer.capture_method(capture_response=False)
def cancel_build(sfn: "SFNClient", s3: "S3Client", *, state_machine_arn: str, bucket: str, build_id: str) -> Execution:
    """StopExecution of a running build; :class:`BuildNotRunning` if it has finished."""
    execution = get_build(sfn, s3, state_machine_arn=state_machine_arn, bucket=bucket, build_id=build_id)
    if execution.status != ExecutionStatus.RUNNING:
        raise BuildNotRunning(f"build {build_id} is {execution.status}: nothing to cancel")
    sfn.stop_execution(
        executionArn=execution_arn(state_machine_arn, build_id),
        error="Cancelled",
        cause="cancelled through the API",
    )
    return execution


def _encode_token(token: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"sfn": token}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value = data["sfn"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidPageToken("next is not a token this API issued") from None
    if not isinstance(value, str) or not value:
        raise InvalidPageToken("next is not a token this API issued")
    return value


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = [
    "BuildConflict",
    "BuildNotFound",
    "BuildNotRunning",
    "Execution",
    "InvalidPageToken",
    "build_exists",
    "cancel_build",
    "execution_arn",
    "find_execution",
    "get_build",
    "list_builds",
    "new_build_id",
    "spec_exists",
]

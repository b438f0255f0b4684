"""Iteration builds (issue 12): ``POST /builds`` with ``iterate_from`` reuses the earlier build's live sandbox.

The earlier build must have SUCCEEDED and its sandbox must still be kept (its lifetime record in
Redis, :mod:`buildlogs.pipeline.lifetime`); otherwise :class:`IterationRefused` (409) with the
reason ``not_succeeded``, ``sandbox_gone`` or ``iteration_running`` — one iteration per sandbox
at a time, by a lease in Redis taken here and given back when the iteration ends (HealthCheck,
Cleanup, or the archiver). An unknown ``iterate_from`` is :class:`BuildNotFound` (404).

The new build has its own id, spec (the earlier one with the changes, resolved here), stream,
archive and execution of the same state machine, whose input carries the sandbox id: Provision
reconnects to it instead of creating one.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.api.builds import BuildNotFound, find_execution, new_build_id, submit_build
from buildlogs.keys import MetaField, meta_key, spec_key
from buildlogs.observability import logger
from buildlogs.pipeline import lifetime
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.spec_store import S3SpecStore
from buildlogs.statuses import RUNNING, ExecutionStatus

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

NOT_SUCCEEDED = "not_succeeded"
SANDBOX_GONE = "sandbox_gone"
ITERATION_RUNNING = "iteration_running"
# A lease whose holder has no execution yet may be a submit in flight (lease taken, StartExecution
# not yet called): it is taken over only once it is older than this.
START_GRACE_SECONDS = 60


class IterationRefused(Exception):
    """409: the earlier build cannot be iterated on now; ``reason`` is the machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class InvalidIteration(ValueError):
    """400: the changes do not apply to the earlier build (a deleted path it does not have, ...)."""


@dataclass(frozen=True, slots=True)
class SandboxFacts:
    """What GET /builds/{id} shows of a build's sandbox."""

    iterate_from: str | None = None
    sandbox_id: str | None = None
    sandbox_expires_at: str | None = None


async def submit_iteration(
    redis: "Redis | RedisCluster",
    sfn: "SFNClient",
    s3: "S3Client",
    *,
    state_machine_arn: str,
    bucket: str,
    request: BuildSpec,
    lease_seconds: int = lifetime.LEASE_SECONDS,
) -> str:
    """Start the iteration build ``request`` asks for; its build id.

    ``lease_seconds``: how long the sandbox's iteration lease lasts (the state machine's execution
    timeout: it never expires under a running iteration). A lease held by a build whose execution
    is no longer running (it ended without giving it back) is taken over.
    """
    earlier_id = request.iterate_from
    if earlier_id is None:
        raise ValueError("not an iteration request")
    build_id = request.build_id or new_build_id()
    request = request.model_copy(update={"build_id": build_id})
    earlier = find_execution(sfn, state_machine_arn, earlier_id)
    if earlier is None:
        raise BuildNotFound(earlier_id)
    again = request.build_id is not None and find_execution(sfn, state_machine_arn, build_id)
    if again and again.input and again.input.get("iterate_from") == earlier_id:
        # The same request again (client-chosen id): the same build, whatever the sandbox does now.
        spec = _resolve(request, S3SpecStore(bucket, s3), bucket, earlier_id)
        execution_input = {"sandbox_id": str(again.input.get("sandbox_id")), "iterate_from": earlier_id}
        return submit_build(
            sfn, s3, state_machine_arn=state_machine_arn, bucket=bucket, spec=spec, execution_input=execution_input
        )
    if earlier.status != ExecutionStatus.SUCCEEDED:
        raise IterationRefused(NOT_SUCCEEDED, f"build {earlier_id} is {earlier.status}: only a SUCCEEDED build")
    sandbox_id = str((earlier.output or {}).get("sandbox_id") or "")
    state = await lifetime.read_state(redis, sandbox_id) if sandbox_id else None
    if state is None or not state.alive():
        raise IterationRefused(SANDBOX_GONE, f"the sandbox of build {earlier_id} is no longer kept")
    spec = _resolve(request, S3SpecStore(bucket, s3), bucket, earlier_id)
    if await lifetime.acquire_lease(redis, sandbox_id, build_id, lease_seconds) is None:
        await _take_over_or_refuse(redis, sfn, state_machine_arn, sandbox_id, build_id, earlier_id, lease_seconds)
    try:
        return submit_build(
            sfn,
            s3,
            state_machine_arn=state_machine_arn,
            bucket=bucket,
            spec=spec,
            execution_input={"sandbox_id": sandbox_id, "iterate_from": earlier_id},
        )
    except BaseException:
        await lifetime.release_lease(redis, sandbox_id, build_id)
        raise


async def _take_over_or_refuse(
    redis: "Redis | RedisCluster",
    sfn: "SFNClient",
    state_machine_arn: str,
    sandbox_id: str,
    build_id: str,
    earlier_id: str,
    lease_seconds: int,
) -> None:
    """The lease is held: take it over if its holder's execution has ended (whatever the TTL says),
    else ``IterationRefused(iteration_running)``. Compare-and-set: two requests never both win."""
    holder = await lifetime.lease_holder(redis, sandbox_id)
    if holder is None and await lifetime.acquire_lease(redis, sandbox_id, build_id, lease_seconds) is not None:
        return  # given back meanwhile
    if holder is not None:
        execution = find_execution(sfn, state_machine_arn, holder)
        if execution is not None:
            ended = execution.status not in RUNNING
        else:  # never started, or a submit in flight: ended once the lease is older than the grace
            age = await lifetime.lease_age(redis, sandbox_id, lease_seconds)
            ended = age is not None and age > START_GRACE_SECONDS
        if ended and await lifetime.take_over_lease(redis, sandbox_id, holder, build_id, lease_seconds):
            logger.info(
                "iteration lease taken over from an ended build",
                extra={"sandbox_id": sandbox_id, "holder": holder, "status": execution.status if execution else None},
            )
            return
    raise IterationRefused(
        ITERATION_RUNNING, f"build {holder or 'another iteration'} is iterating in the sandbox of {earlier_id}"
    )


def _resolve(request: BuildSpec, store: S3SpecStore, bucket: str, earlier_id: str) -> BuildSpec:
    earlier_spec = store.load(f"s3://{bucket}/{spec_key(earlier_id)}", earlier_id)
    try:
        return request.resolved_iteration(earlier_spec)
    except ValueError as exc:
        raise InvalidIteration(str(exc)) from None


async def sandbox_facts(
    redis: "Redis | RedisCluster", build_id: str, execution_input: dict[str, object] | None, output: object
) -> SandboxFacts:
    """The build's ``iterate_from``, ``sandbox_id`` and until when the sandbox is kept (``None``: not kept)."""
    given = execution_input or {}
    iterate_from = str(given["iterate_from"]) if given.get("iterate_from") else None
    sandbox_id = (output or {}).get("sandbox_id") if isinstance(output, dict) else None
    sandbox_id = sandbox_id or given.get("sandbox_id")
    if not sandbox_id:
        recorded = await redis.hget(meta_key(build_id), MetaField.SANDBOX_ID)
        sandbox_id = recorded.decode() if isinstance(recorded, bytes) else recorded
    if not sandbox_id:
        return SandboxFacts(iterate_from=iterate_from)
    state = await lifetime.read_state(redis, str(sandbox_id))
    expires = None
    if state.alive() and state.expires_at is not None:
        expires = lifetime.iso_utc(state.expires_at)
    return SandboxFacts(iterate_from, str(sandbox_id), expires)


__all__ = [
    "ITERATION_RUNNING",
    "NOT_SUCCEEDED",
    "SANDBOX_GONE",
    "InvalidIteration",
    "IterationRefused",
    "SandboxFacts",
    "sandbox_facts",
    "submit_iteration",
]

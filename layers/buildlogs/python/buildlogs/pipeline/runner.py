"""Runs one build stage for the stage Lambda: validate, stream, run the step, report, re-raise typed.

Every stage writes its ``stage_start``/``stage_end`` entries; a failure writes
``BUILD FAILED: <reason>`` (event ``build_failed``) once, and re-raises an error Step Functions
can tell apart (``CommandFailed`` is caught, ``SandboxUnavailable`` retried first). The
streamer is flushed in ``finally`` so the last lines survive any failure.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from buildlogs.clients import create_redis
from buildlogs.errors import BuildError, InvalidInput, SandboxUnavailable
from buildlogs.keys import MetaField, meta_key
from buildlogs.observability import logger, metrics, tracer
from buildlogs.pipeline.models import STAGE_INPUTS, STAGE_OUTPUTS, BuildSpec, ExecutionState
from buildlogs.pipeline.sandbox import create_runtime
from buildlogs.pipeline.sandbox.protocol import SandboxRuntime
from buildlogs.pipeline.spec_store import store_for
from buildlogs.pipeline.stages import CLEANUP, get_stage
from buildlogs.pipeline.steps import STEPS, StageContext
from buildlogs.settings import Settings, get_settings
from buildlogs.stream.lines import masker
from buildlogs.stream.streamer import LogStreamer

SpecLoader = Callable[[str, str], BuildSpec]


def _masked(text: str, secrets: Iterable[str]) -> str:
    """Errors go to Step Functions, not through the streamer: mask them the same way."""
    return masker(secrets)(text)


def _default_spec_loader(settings: Settings) -> SpecLoader:
    def load(spec_ref: str, build_id: str) -> BuildSpec:
        return store_for(spec_ref, sources_bucket=settings.sources_bucket).load(spec_ref, build_id)

    return load


def parse_state(stage: str, event: Any) -> ExecutionState:
    """The stage's input model, or ``InvalidInput`` (never retried) with the reason."""
    try:
        return STAGE_INPUTS[stage].model_validate(event)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"invalid input for stage {stage}: {reasons}") from None


async def run_stage(
    stage_name: str,
    event: Any,
    *,
    settings: Settings | None = None,
    redis: "Redis | RedisCluster | None" = None,
    runtime_factory: Callable[..., SandboxRuntime] = create_runtime,
    spec_loader: SpecLoader | None = None,
) -> dict[str, Any]:
    """Run ``stage_name`` for the execution state ``event``; return the next state's input."""
    settings = settings or get_settings()
    stage = get_stage(stage_name)
    try:
        state = parse_state(stage.name, event)
    except InvalidInput:
        metrics.add_metric(name="InvalidInput", unit=MetricUnit.Count, value=1)
        raise
    logger.append_keys(build_id=state.build_id, stage=stage.name)
    tracer.put_annotation(key="build_id", value=state.build_id)
    own_redis = redis is None
    client = redis if redis is not None else create_redis(settings)
    try:
        return await _run(stage.name, state, settings, client, runtime_factory, spec_loader)
    finally:
        if own_redis:
            await client.aclose()


async def _run(
    stage: str,
    state: ExecutionState,
    settings: Settings,
    redis: "Redis | RedisCluster",
    runtime_factory: Callable[..., SandboxRuntime],
    spec_loader: SpecLoader | None,
) -> dict[str, Any]:
    loader = spec_loader or _default_spec_loader(settings)
    spec: BuildSpec | None = None
    load_error: BaseException | None = None
    try:
        spec = await asyncio.to_thread(loader, state.spec_ref, state.build_id)
    except Exception as exc:  # reported in the stream below, like any other stage failure
        load_error = exc
    secrets = spec.secrets if spec is not None else []
    streamer = LogStreamer(redis, state.build_id, phase=stage, secrets=secrets)
    ctx: StageContext | None = None
    started = time.monotonic()
    try:
        await streamer.stage(stage)
        if spec is None and stage == CLEANUP.name:
            # Cleanup must reap the sandbox even when the spec cannot be read; it needs nothing from it.
            await streamer.write_event("Build spec unreadable; cleaning up without it")
            spec = BuildSpec(start="true", port=1)
        if spec is None:
            if isinstance(load_error, BuildError):
                raise load_error
            raise InvalidInput(f"could not read the build spec: {type(load_error).__name__}")
        ctx = StageContext(state, spec, streamer, redis, settings, runtime_factory)
        if stage == CLEANUP.name:
            await _report_unreported_failure(ctx)
        changes = await STEPS[stage](ctx)
        await streamer.end_stage(exit_code=0, **({"skipped": True} if ctx.skipped else {}))
        output = STAGE_OUTPUTS[stage].model_validate(state.updated(**changes))
        metrics.add_metric(name="StageSucceeded", unit=MetricUnit.Count, value=1)
        logger.info("stage succeeded", extra={"duration_ms": int((time.monotonic() - started) * 1000)})
        return output.model_dump(mode="json", exclude_none=True)
    except SandboxUnavailable as exc:
        message = _masked(exc.message, secrets)
        await streamer.write_event(f"Sandbox unavailable: {message} (the stage will be retried)")
        await streamer.end_stage(exit_code=-1)
        metrics.add_metric(name="SandboxUnavailable", unit=MetricUnit.Count, value=1)
        logger.warning("sandbox unavailable", extra={"reason": message})
        raise SandboxUnavailable(message) from None
    except BuildError as exc:
        message = _masked(exc.message, secrets)
        await _fail(streamer, redis, state.build_id, stage, message, exc.exit_code)
        raise type(exc)(message, exc.exit_code) from None
    except Exception as exc:
        message = f"internal error in the {stage} stage ({type(exc).__name__})"
        await _fail(streamer, redis, state.build_id, stage, message, None)
        logger.exception("stage crashed")
        # Its own message may hold a secret (a command line, an env value): Step Functions'
        # Cause and the console get the masked summary only; the traceback is in the log above.
        raise BuildError(message) from None
    finally:
        if ctx is not None and ctx.runtime is not None:
            await ctx.runtime.close()
        await streamer.close()


async def _fail(
    streamer: LogStreamer, redis: "Redis | RedisCluster", build_id: str, stage: str, message: str, code: int | None
) -> None:
    await streamer.write_event(f"BUILD FAILED: {message}", event="build_failed")
    await streamer.end_stage(exit_code=code if code is not None else 1)
    metrics.add_metric(name="StageFailed", unit=MetricUnit.Count, value=1)
    logger.warning("stage failed", extra={"reason": message})
    try:
        await redis.hset(meta_key(build_id), MetaField.FAILED_STAGE, stage)
    except (RedisError, OSError) as exc:  # bookkeeping only: the build already failed
        logger.warning("could not record the failed stage", extra={"error": repr(exc)[:300]})


async def _report_unreported_failure(ctx: StageContext) -> None:
    """A stage that died without reporting (Lambda timeout, retries exhausted) gets its build_failed line here."""
    try:
        failed = await ctx.redis.hget(meta_key(ctx.state.build_id), MetaField.FAILED_STAGE)
    except (RedisError, OSError):  # Redis down: the streamer drops the line anyway; never fail cleanup
        return
    if failed:
        return
    error = getattr(ctx.state, "error", None) or {}
    name = str(error.get("Error") or "an earlier stage failed")
    cause = str(error.get("Cause") or "")[:300]
    text = f"BUILD FAILED: {name}" + (f": {cause}" if cause else "")
    await ctx.streamer.write_event(_masked(text, ctx.spec.secrets), event="build_failed")
    with contextlib.suppress(RedisError, OSError):
        await ctx.redis.hset(meta_key(ctx.state.build_id), MetaField.FAILED_STAGE, CLEANUP.name)

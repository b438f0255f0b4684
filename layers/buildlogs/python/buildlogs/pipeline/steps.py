"""What each build stage does, as one plain async function per stage (the stage handler calls them).

A step gets a :class:`StageContext`, streams every command's output through ``ctx.streamer``
and returns the changes to the execution state; a failure raises a typed ``BuildError``.
"""

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from buildlogs.errors import CommandFailed
from buildlogs.keys import MetaField, meta_key
from buildlogs.observability import logger
from buildlogs.pipeline.models import BuildSpec, ExecutionState
from buildlogs.pipeline.sandbox import create_runtime
from buildlogs.pipeline.sandbox.protocol import SandboxRuntime, require_success
from buildlogs.pipeline.stages import STAGES, require_every_stage
from buildlogs.settings import Settings
from buildlogs.stream.streamer import LogStreamer

HEALTH_POLL_INTERVAL_S = 0.5
HEALTH_REQUEST_TIMEOUT_S = 5.0
# Healthy: 2xx and 3xx. A 4xx fails at once; 5xx (and no answer) are retried until the timeout.
HTTP_OK_MIN, HTTP_OK_END, HTTP_RETRYABLE_MIN = 200, 400, 500


@dataclass
class StageContext:
    """Everything a step needs; clients come in from the caller."""

    state: ExecutionState
    spec: BuildSpec
    streamer: LogStreamer
    redis: "Redis | RedisCluster"
    settings: Settings
    runtime_factory: Callable[..., SandboxRuntime] = create_runtime
    runtime: SandboxRuntime | None = None  # the sandbox, once a step has started it

    async def sandbox(self) -> SandboxRuntime:
        """The build's sandbox, reconnected by its id (created only by provision)."""
        if self.runtime is None:
            runtime = self.runtime_factory(self.settings, sandbox_id=self.state.sandbox_id, template=self.spec.template)
            await runtime.start()
            self.runtime = runtime
        return self.runtime

    @property
    def env(self) -> Mapping[str, str]:
        return self.spec.env


async def provision(ctx: StageContext) -> dict[str, Any]:
    """Create the sandbox and its work directory; record its id so the archiver can reap it."""
    build_id = ctx.state.build_id
    runtime = ctx.runtime_factory(ctx.settings, template=ctx.spec.template, build_id=build_id)
    await runtime.start()
    ctx.runtime = runtime
    # Outlives any run (the stages' timeouts) plus the stream's TTL; the archiver expires it with the stream.
    ttl = sum(stage.timeout_seconds for stage in STAGES) + ctx.settings.log_stream_ttl_seconds
    try:
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.hset(meta_key(build_id), MetaField.SANDBOX_ID, runtime.sandbox_id)
        pipe.expire(meta_key(build_id), ttl)
        await pipe.execute()
    except (RedisError, OSError) as exc:  # a Redis outage never fails a build; the id still travels in the state
        logger.warning("could not record the sandbox id for the archiver", extra={"error": repr(exc)[:300]})
    await ctx.streamer.write_event(f"Sandbox {runtime.sandbox_id} ready (template {ctx.spec.template})")
    return {"sandbox_id": runtime.sandbox_id}


async def scaffold(ctx: StageContext) -> dict[str, Any]:
    """Write the spec's files into the sandbox's work directory."""
    runtime = await ctx.sandbox()
    await runtime.write_files(ctx.spec.files)
    for path, text in sorted(ctx.spec.files.items()):
        await ctx.streamer.write_event(f"  + {path} ({len(text.encode('utf-8', 'surrogatepass'))} bytes)")
    await ctx.streamer.write_event(f"Wrote {len(ctx.spec.files)} files to {runtime.workspace}")
    return {}


async def _run(ctx: StageContext, stage: str, command: str | None, what: str) -> dict[str, Any]:
    if not command:
        await ctx.streamer.write_event(f"No {what} command: skipped")
        return {}
    runtime = await ctx.sandbox()
    timeout = ctx.spec.timeout_for(stage)
    await ctx.streamer.write_event(f"$ {command}")
    result = await runtime.run_command(
        command, timeout, on_stdout=ctx.streamer.on_stdout, on_stderr=ctx.streamer.on_stderr, envs=ctx.env
    )
    require_success(result, command, timeout, what)
    return {}


async def install(ctx: StageContext) -> dict[str, Any]:
    return await _run(ctx, "install", ctx.spec.install, "install")


async def build(ctx: StageContext) -> dict[str, Any]:
    return await _run(ctx, "build", ctx.spec.build, "build")


async def start(ctx: StageContext) -> dict[str, Any]:
    """Start the dev server in the background (the files are already there) and wait until its port answers."""
    runtime = await ctx.sandbox()
    port = ctx.spec.port
    await ctx.streamer.write_event(f"$ {ctx.spec.start}")
    await runtime.start_dev_server(
        "",
        {},
        ctx.streamer.on_stdout,
        ctx.streamer.on_stderr,
        start_command=ctx.spec.start,
        port=port,
        envs={"PORT": str(port), **ctx.env},
        timeout=ctx.spec.timeout_for("start"),
    )
    url = runtime.preview_url(port)
    await ctx.streamer.write_event(f"Dev server listening on port {port}: {url}", preview_url=url)
    return {"preview_url": url}


async def healthcheck(ctx: StageContext) -> dict[str, Any]:
    """GET the health check path until it answers 2xx or 3xx, within the stage's timeout.

    A 4xx is a wrong path or an app that does not serve it: the health check fails (a build must not
    pass because something answered); 5xx and no answer are retried until the timeout.
    """
    url = f"{(ctx.state.preview_url or '').rstrip('/')}{ctx.spec.healthcheck_path}"
    timeout = ctx.spec.timeout_for("healthcheck")
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        started = time.monotonic()
        status, reason = await asyncio.to_thread(_http_get_status, url)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if status is not None:
            await ctx.streamer.write_event(
                f"GET {ctx.spec.healthcheck_path} -> {status} {reason} ({elapsed_ms} ms)", status_code=status
            )
            if HTTP_OK_MIN <= status < HTTP_OK_END:
                return {}
            last = f"HTTP {status}"
            if status < HTTP_RETRYABLE_MIN:  # a 4xx will not change by asking again
                raise CommandFailed(f"health check GET {ctx.spec.healthcheck_path} answered {status} {reason}")
        else:
            last = reason
        if time.monotonic() + HEALTH_POLL_INTERVAL_S > deadline:
            raise CommandFailed(f"health check GET {ctx.spec.healthcheck_path} failed within {timeout}s: {last}")
        await asyncio.sleep(HEALTH_POLL_INTERVAL_S)


def _http_get_status(url: str) -> tuple[int | None, str]:
    """``(status, reason)`` of a GET, or ``(None, why)`` when nothing answered."""
    if not url.startswith(("http://", "https://")):
        return None, f"not an http(s) URL: {url[:80]}"
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "buildlogs-healthcheck"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HEALTH_REQUEST_TIMEOUT_S) as response:  # noqa: S310
            return int(response.status), str(response.reason)
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(exc.reason)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


async def cleanup(ctx: StageContext) -> dict[str, Any]:
    """Kill the sandbox (runs after any failure); a run that never got one has nothing to do."""
    if not ctx.state.sandbox_id:
        await ctx.streamer.write_event("No sandbox to clean up")
        return {}
    runtime = ctx.runtime_factory(ctx.settings, sandbox_id=ctx.state.sandbox_id, template=ctx.spec.template)
    await runtime.kill()
    await ctx.streamer.write_event(f"Sandbox {ctx.state.sandbox_id} killed")
    return {}


STEPS: dict[str, Callable[[StageContext], Awaitable[dict[str, Any]]]] = {
    "provision": provision,
    "scaffold": scaffold,
    "install": install,
    "build": build,
    "start": start,
    "healthcheck": healthcheck,
    "cleanup": cleanup,
}
require_every_stage(STEPS, "STEPS")

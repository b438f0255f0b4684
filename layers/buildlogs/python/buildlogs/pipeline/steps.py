"""What each build stage does, as one plain async function per stage (the stage handler calls them).

A step gets a :class:`StageContext`, streams every command's output through ``ctx.streamer``
and returns the changes to the execution state; a failure raises a typed ``BuildError``.
"""

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from buildlogs import keys
from buildlogs.errors import CommandFailed, InvalidInput, SandboxGone
from buildlogs.keys import MetaField, meta_key
from buildlogs.observability import logger
from buildlogs.pipeline import lifetime
from buildlogs.pipeline.models import BuildSpec, ExecutionState
from buildlogs.pipeline.sandbox import create_runtime
from buildlogs.pipeline.sandbox.protocol import SandboxRuntime, port_poll_delays, require_success
from buildlogs.pipeline.stages import STAGES, get_stage, require_every_stage
from buildlogs.settings import Settings
from buildlogs.stream.streamer import LogStreamer

HEALTH_POLL_INTERVAL_S = 0.5
UNKNOWN_SERVER_STOP_TIMEOUT_S = 10.0  # an unrecorded server's port must close this soon once stopped
HEALTH_REQUEST_TIMEOUT_S = 5.0
# Healthy: 2xx and 3xx. A 4xx fails at once; 5xx (and no answer) are retried until the timeout.
HTTP_OK_MIN, HTTP_OK_END, HTTP_RETRYABLE_MIN = 200, 400, 500
_T = TypeVar("_T")


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
    skipped: bool = False  # the step decided there was nothing to do (its stage_end says skipped)

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
    """Create the sandbox (an iteration: reconnect to the earlier build's and extend its life); record its id
    so the archiver can reap it, and until when it is kept."""
    build_id = ctx.state.build_id
    keep = ctx.settings.sandbox_keep_alive_seconds
    if ctx.state.sandbox_id is not None:
        if not ctx.spec.is_iteration:
            raise InvalidInput("a sandbox_id in the execution input is only for an iteration build")
        sandbox_id = ctx.state.sandbox_id
        runtime = ctx.runtime_factory(ctx.settings, sandbox_id=sandbox_id, template=ctx.spec.template)
        # Before the call: the record never says the sandbox lives longer than its new deadline.
        expires_at = time.time() + keep
        try:
            await runtime.start()  # E2B: AsyncSandbox.connect(sandbox_id)
            ctx.runtime = runtime
            await runtime.extend(keep)  # E2B: set_timeout
        except SandboxGone:
            # Killed or timed out behind our back: the record says so, the next request gets sandbox_gone.
            await _record(ctx, lambda: lifetime.record_killed(ctx.redis, sandbox_id))
            raise
    else:
        expires_at = time.time() + keep
        runtime = ctx.runtime_factory(ctx.settings, template=ctx.spec.template, build_id=build_id)
        await runtime.start()
        ctx.runtime = runtime
    # Outlives any run (the stages' timeouts) plus the stream's TTL; the archiver expires it with the stream.
    ttl = sum(stage.timeout_seconds for stage in STAGES) + ctx.settings.log_stream_ttl_seconds
    try:
        pipe = ctx.redis.pipeline(transaction=False)
        fields = {MetaField.SANDBOX_ID: runtime.sandbox_id}
        if ctx.spec.iterate_from:  # the archiver then applies an iteration's kill rule (never on doubt)
            fields[MetaField.ITERATE_FROM] = ctx.spec.iterate_from
        pipe.hset(meta_key(build_id), mapping={str(name): value for name, value in fields.items()})
        pipe.expire(meta_key(build_id), ttl)
        await pipe.execute()
        await lifetime.record_kept(ctx.redis, runtime.sandbox_id, expires_at, ctx.settings.log_stream_ttl_seconds)
    except (RedisError, OSError) as exc:  # a Redis outage never fails a build; the id still travels in the state
        logger.warning("could not record the sandbox id for the archiver", extra={"error": repr(exc)[:300]})
    until = _iso(expires_at)
    if ctx.spec.is_iteration:
        await ctx.streamer.write_event(
            f"Reconnected to sandbox {runtime.sandbox_id} of build {ctx.spec.iterate_from} "
            f"(iteration build; kept until {until})",
            sandbox_expires_at=until,
        )
    else:
        await ctx.streamer.write_event(
            f"Sandbox {runtime.sandbox_id} ready (template {ctx.spec.template}; kept until {until})",
            sandbox_expires_at=until,
        )
    return {"sandbox_id": runtime.sandbox_id}


def _iso(epoch: float) -> str:
    return lifetime.iso_utc(epoch)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


async def _recorded(ctx: StageContext, read: Callable[[], Awaitable[_T]]) -> _T | None:
    """A read of the sandbox's record; ``None`` when Redis does not answer (the stage does everything)."""
    try:
        return await read()
    except (RedisError, OSError) as exc:
        logger.warning("could not read the sandbox record", extra={"error": repr(exc)[:300]})
        return None


async def _record(ctx: StageContext, write: Callable[[], Awaitable[object]]) -> None:
    try:
        await write()
    except (RedisError, OSError) as exc:  # bookkeeping: the next iteration does more work, nothing fails
        logger.warning("could not update the sandbox record", extra={"error": repr(exc)[:300]})


async def scaffold(ctx: StageContext) -> dict[str, Any]:
    """Write the spec's files into the sandbox's work directory; an iteration writes and deletes only
    what differs from the files on the sandbox's disk (as recorded), and always deletes its ``deleted``.

    The record never runs ahead of the disk: the hashes of the paths about to change are forgotten
    before the disk is touched and the new ones written after, so a Scaffold that fails half way
    leaves those paths unknown (the next iteration writes them), never stale.
    """
    runtime = await ctx.sandbox()
    files = ctx.spec.files
    sandbox_id = runtime.sandbox_id
    before = None
    if ctx.spec.is_iteration:
        before = await _recorded(ctx, lambda: lifetime.file_hashes(ctx.redis, sandbox_id))
        if before is None:
            await ctx.streamer.write_event("No record of the sandbox's files: writing every file")
    if before is None:
        deleted = sorted(set(ctx.spec.deleted))
        await _record(ctx, lambda: lifetime.forget_files(ctx.redis, sandbox_id, None))
        await runtime.write_files(files)
        await runtime.remove_files(deleted)
        for path, text in sorted(files.items()):
            await ctx.streamer.write_event(f"  + {path} ({_size(text)} bytes)")
        for path in deleted:
            await ctx.streamer.write_event(f"  - {path}")
        await _record(ctx, lambda: lifetime.record_files(ctx.redis, sandbox_id, files, (), replace=True))
        await ctx.streamer.write_event(
            f"Wrote {len(files)} files to {runtime.workspace}" + (f", deleted {len(deleted)}" if deleted else "")
        )
        return {}
    changed = {path: text for path, text in files.items() if before.get(path) != lifetime.content_hash(text)}
    deleted = sorted({path for path in before if path not in files} | set(ctx.spec.deleted))
    await _record(ctx, lambda: lifetime.forget_files(ctx.redis, sandbox_id, [*changed, *deleted]))
    await runtime.write_files(changed)
    await runtime.remove_files(deleted)
    for path, text in sorted(changed.items()):
        mark = "~" if path in before else "+"
        await ctx.streamer.write_event(f"  {mark} {path} ({_size(text)} bytes)")
    for path in deleted:
        await ctx.streamer.write_event(f"  - {path}")
    await _record(ctx, lambda: lifetime.record_files(ctx.redis, sandbox_id, changed, deleted, replace=False))
    unchanged = len(files) - len(changed)
    await ctx.streamer.write_event(
        f"Iteration: wrote {len(changed)} changed files, deleted {len(deleted)} ({unchanged} unchanged) "
        f"in {runtime.workspace}",
        written=len(changed),
        deleted=len(deleted),
    )
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
    """Install; an iteration skips it unless a dependency manifest or the install command changed."""
    fingerprint = lifetime.install_fingerprint(ctx.spec.install, ctx.spec.files)
    runtime = await ctx.sandbox()
    if ctx.spec.is_iteration:
        state = await _recorded(ctx, lambda: lifetime.read_state(ctx.redis, runtime.sandbox_id))
        reasons = lifetime.install_changes(state.install if state else None, fingerprint)
        if not reasons:
            await ctx.streamer.write_event(f"--- {get_stage('install').label}: skipped (no manifest changed) ---")
            ctx.skipped = True
            return {}
        await ctx.streamer.write_event(f"Installing again: {', '.join(reasons)}")
    # What the last Install ran against no longer holds once this one starts: a failed (or cut
    # short) Install must not leave it, or the next iteration would skip Install on a broken tree.
    # A failed clear is not fatal: Install runs anyway, and the record is cleared again on failure.
    await _forget_install(ctx, runtime.sandbox_id)
    try:
        changes = await _run(ctx, "install", ctx.spec.install, "install")
    except BaseException:
        await _forget_install(ctx, runtime.sandbox_id)
        raise
    recorded = json.dumps(fingerprint, sort_keys=True)
    await _record(
        ctx, lambda: lifetime.record_fields(ctx.redis, runtime.sandbox_id, {lifetime.SandboxField.INSTALL: recorded})
    )
    return changes


async def _forget_install(ctx: StageContext, sandbox_id: str) -> None:
    await _record(ctx, lambda: ctx.redis.hdel(keys.sandbox_key(sandbox_id), lifetime.SandboxField.INSTALL))


async def build(ctx: StageContext) -> dict[str, Any]:
    return await _run(ctx, "build", ctx.spec.build, "build")


async def start(ctx: StageContext) -> dict[str, Any]:
    """Start the dev server in the background (the files are already there) and wait until its port answers.

    An iteration first stops the dev server running in the sandbox (by its recorded pid): Build has
    passed by now, so a failed iteration before this point leaves the earlier preview up.
    """
    runtime = await ctx.sandbox()
    port = ctx.spec.port
    if ctx.spec.is_iteration:
        state = await _recorded(ctx, lambda: lifetime.read_state(ctx.redis, runtime.sandbox_id))
        if state is not None and state.server_pid is not None:
            await ctx.streamer.write_event(
                f"Stopping the dev server of build {state.server_build or '?'} (pid {state.server_pid})"
            )
            with contextlib.suppress(ValueError):  # not a process of this sandbox any more: nothing to stop
                await runtime.stop_process(state.server_pid)
            await _record(
                ctx,
                lambda: ctx.redis.hdel(keys.sandbox_key(runtime.sandbox_id), lifetime.SandboxField.SERVER_PID),
            )
            await _wait_for_port_closed(runtime, port, ctx.spec.timeout_for("start"))
        elif await runtime.port_open(port):
            # No pid names the server on the port (the record lost it): it is the earlier build's,
            # in our sandbox. An open port must never pass for the new server: stop it, or fail.
            await ctx.streamer.write_event(
                f"Port {port} is open and no dev server is recorded on it: stopping the sandbox's background processes"
            )
            await runtime.stop_background_processes()
            await _wait_for_port_closed(
                runtime,
                port,
                min(ctx.spec.timeout_for("start"), UNKNOWN_SERVER_STOP_TIMEOUT_S),
                why="after stopping every process of the sandbox: the new dev server cannot take it",
            )
    await ctx.streamer.write_event(f"$ {ctx.spec.start}")
    process = await runtime.start_dev_server(
        "",
        {},
        ctx.streamer.on_stdout,
        ctx.streamer.on_stderr,
        start_command=ctx.spec.start,
        port=port,
        envs={"PORT": str(port), **ctx.env},
        timeout=ctx.spec.timeout_for("start"),
    )
    server = {
        lifetime.SandboxField.SERVER_PID: str(process.pid),
        lifetime.SandboxField.SERVER_BUILD: ctx.state.build_id,
    }
    await _record(ctx, lambda: lifetime.record_fields(ctx.redis, runtime.sandbox_id, server))
    url = runtime.preview_url(port)
    await ctx.streamer.write_event(f"Dev server listening on port {port}: {url}", preview_url=url)
    return {"preview_url": url}


async def _wait_for_port_closed(
    runtime: SandboxRuntime,
    port: int,
    timeout: float,  # noqa: ASYNC109
    why: str = "",
) -> None:
    """The stopped server's port is free again (or ``CommandFailed`` after ``timeout``)."""
    deadline = time.monotonic() + timeout
    delays = port_poll_delays()
    while await runtime.port_open(port):
        if time.monotonic() >= deadline:
            reason = f" {why}" if why else ""
            raise CommandFailed(f"port {port} is still held after {timeout:g}s{reason}")
        await asyncio.sleep(next(delays))


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
                await _now_serving(ctx)
                return {}
            last = f"HTTP {status}"
            if status < HTTP_RETRYABLE_MIN:  # a 4xx will not change by asking again
                raise CommandFailed(f"health check GET {ctx.spec.healthcheck_path} answered {status} {reason}")
        else:
            last = reason
        if time.monotonic() + HEALTH_POLL_INTERVAL_S > deadline:
            raise CommandFailed(f"health check GET {ctx.spec.healthcheck_path} failed within {timeout}s: {last}")
        await asyncio.sleep(HEALTH_POLL_INTERVAL_S)


async def _now_serving(ctx: StageContext) -> None:
    """The build passed: its sandbox serves its preview; an iteration gives the sandbox's lease back."""
    sandbox_id = ctx.state.sandbox_id
    if not sandbox_id:
        return
    build_id = ctx.state.build_id
    await _record(ctx, lambda: lifetime.record_fields(ctx.redis, sandbox_id, {lifetime.SandboxField.SERVING: build_id}))
    await _record(ctx, lambda: lifetime.release_lease(ctx.redis, sandbox_id, build_id))


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
    """Kill the sandbox (runs after any failure) unless a succeeded build still serves from it (a failed
    iteration leaves the earlier build's sandbox and preview); a run that never got one has nothing to do."""
    sandbox_id = ctx.state.sandbox_id
    if not sandbox_id:
        await ctx.streamer.write_event("No sandbox to clean up")
        return {}
    build_id = ctx.state.build_id
    await _record(ctx, lambda: lifetime.release_lease(ctx.redis, sandbox_id, build_id))
    iteration = ctx.spec.is_iteration
    decision = await _recorded(ctx, lambda: lifetime.may_kill(ctx.redis, sandbox_id, build_id, iteration=iteration))
    if decision is None and iteration:
        # An iteration starts only from a SUCCEEDED build: its sandbox serves that build. Without
        # the record's word that it is gone or lapsed, it stays (E2B's own timeout reaps it).
        await ctx.streamer.write_event(
            f"Sandbox {sandbox_id} kept: build {ctx.spec.iterate_from} serves from it "
            "(its record cannot be read; the sandbox's keep-alive reaps it)"
        )
        return {}
    if decision is not None and not decision[0]:
        state = decision[1]
        until = _iso(state.expires_at) if state.expires_at is not None else "?"
        serving = state.serving or ctx.spec.iterate_from
        await ctx.streamer.write_event(
            f"Sandbox {sandbox_id} kept: build {serving} still serves from it (until {until})"
        )
        return {}
    if decision is not None and decision[1].killed:
        await ctx.streamer.write_event(f"Sandbox {sandbox_id} is gone already")
        return {}
    runtime = ctx.runtime_factory(ctx.settings, sandbox_id=sandbox_id, template=ctx.spec.template)
    await runtime.kill()
    await _record(ctx, lambda: lifetime.record_killed(ctx.redis, sandbox_id))
    await ctx.streamer.write_event(f"Sandbox {sandbox_id} killed")
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

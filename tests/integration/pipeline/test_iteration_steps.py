"""The iteration steps one by one (issue 12), with a real Redis: what they do when the sandbox's
record is missing, half there or unreadable, and when the sandbox itself is in an odd state."""

import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.api.iterations import sandbox_facts
from buildlogs.errors import CommandFailed, SandboxGone, SandboxUnavailable
from buildlogs.keys import logs_key, meta_key, sandbox_files_key, sandbox_key, sandbox_lease_key
from buildlogs.pipeline import lifetime, steps
from buildlogs.pipeline.models import BuildSpec, ExecutionState
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime
from buildlogs.pipeline.steps import StageContext
from buildlogs.settings import get_settings
from buildlogs.stream.entries import entry_record
from buildlogs.stream.streamer import LogStreamer
from tests.support.sandbox import eventually, free_port


@dataclass
class RecordingRuntime:
    """A sandbox runtime that only records what the step asked of it (enough for Cleanup)."""

    sandbox_id: str
    killed: list[str] = field(default_factory=list)

    async def kill(self) -> None:
        self.killed.append(self.sandbox_id)

    async def close(self) -> None:
        return None


@pytest.fixture
async def sandbox_id(redis: Redis) -> AsyncIterator[str]:
    """A unique sandbox id whose keys are deleted afterwards."""
    sid = f"sbx-{uuid.uuid4().hex[:12]}"
    yield sid
    await redis.delete(sandbox_key(sid), sandbox_files_key(sid), sandbox_lease_key(sid))


@pytest.fixture
async def cleanup_keys(redis: Redis, build_id: str) -> AsyncIterator[None]:
    yield
    await redis.delete(logs_key(build_id), meta_key(build_id))


def unreachable_redis() -> Redis:
    """A client of a port nothing listens on: every command raises ConnectionError."""
    return Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)


def iteration_spec(**changes: Any) -> BuildSpec:
    base: dict[str, Any] = {"iterate_from": "t-earlier-build", "start": "true", "port": 8080, "files": {"a.txt": "a"}}
    return BuildSpec.model_validate({**base, **changes})


def context(
    redis: Redis, build_id: str, sandbox_id: str, spec: BuildSpec, runtime: Any, *, record: Redis | None = None
) -> StageContext:
    """A step's context; ``record``: the Redis the step's bookkeeping uses (the stream always the real one)."""
    state = ExecutionState(build_id=build_id, spec_ref="local://spec", sandbox_id=sandbox_id)
    streamer = LogStreamer(redis, build_id, phase="cleanup")
    return StageContext(state, spec, streamer, record or redis, get_settings(), runtime_factory=lambda *a, **k: runtime)


async def streamed(redis: Redis, build_id: str) -> list[str]:
    return [entry_record(i, f)["text"] for i, f in await redis.xrange(logs_key(build_id))]


# -- finding 1: Cleanup of a failed iteration never kills the sandbox on doubt --------------------


@pytest.mark.usefixtures("cleanup_keys")
async def test_cleanup_of_an_iteration_keeps_the_sandbox_when_redis_is_down(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN a failed iteration whose Cleanup cannot reach Redis for the sandbox's record
    runtime = RecordingRuntime(sandbox_id)
    broken = unreachable_redis()
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), runtime, record=broken)
    # WHEN Cleanup runs
    await steps.cleanup(ctx)
    await ctx.streamer.close()
    await broken.aclose()
    # THEN the sandbox (serving the earlier, succeeded build) is not killed, and the log says why
    assert runtime.killed == []
    assert any(
        t.startswith(f"Sandbox {sandbox_id} kept: build t-earlier-build serves")
        for t in await streamed(redis, build_id)
    )


@pytest.mark.usefixtures("cleanup_keys")
async def test_cleanup_of_an_iteration_keeps_a_sandbox_whose_record_lacks_serving(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN a kept sandbox whose record lost its `serving` field (or never got it)
    await lifetime.record_kept(redis, sandbox_id, time.time() + 600, 60)
    runtime = RecordingRuntime(sandbox_id)
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), runtime)
    # WHEN a failed iteration's Cleanup runs THEN the sandbox stays
    await steps.cleanup(ctx)
    await ctx.streamer.close()
    assert runtime.killed == []
    assert any(
        t.startswith(f"Sandbox {sandbox_id} kept: build t-earlier-build") for t in await streamed(redis, build_id)
    )


@pytest.mark.usefixtures("cleanup_keys")
async def test_cleanup_of_an_iteration_kills_a_sandbox_whose_keep_alive_lapsed(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN the record positively says the keep-alive lapsed
    await lifetime.record_kept(redis, sandbox_id, time.time() - 1, 60)
    await lifetime.record_fields(redis, sandbox_id, {lifetime.SandboxField.SERVING: "t-earlier-build"})
    runtime = RecordingRuntime(sandbox_id)
    # WHEN a failed iteration's Cleanup runs THEN it kills the sandbox
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), runtime)
    await steps.cleanup(ctx)
    await ctx.streamer.close()
    assert runtime.killed == [sandbox_id]
    assert (await lifetime.read_state(redis, sandbox_id)).killed


@pytest.mark.usefixtures("cleanup_keys")
async def test_cleanup_of_an_iteration_whose_sandbox_is_recorded_killed_has_nothing_to_kill(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN the record says the sandbox was killed (or E2B reported it gone)
    await lifetime.record_kept(redis, sandbox_id, time.time() + 600, 60)
    await lifetime.record_killed(redis, sandbox_id)
    runtime = RecordingRuntime(sandbox_id)
    # WHEN a failed iteration's Cleanup runs THEN it says so and kills nothing
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), runtime)
    await steps.cleanup(ctx)
    await ctx.streamer.close()
    assert runtime.killed == []
    assert f"Sandbox {sandbox_id} is gone already" in await streamed(redis, build_id)


@pytest.mark.usefixtures("cleanup_keys")
async def test_cleanup_of_a_first_build_without_a_record_still_kills(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN a failed first build (no iteration) whose sandbox has no record
    runtime = RecordingRuntime(sandbox_id)
    ctx = context(redis, build_id, sandbox_id, BuildSpec(start="true", port=8080), runtime)
    # WHEN Cleanup runs THEN it kills, as before iterations existed
    await steps.cleanup(ctx)
    await ctx.streamer.close()
    assert runtime.killed == [sandbox_id]


async def test_provision_of_an_iteration_records_iterate_from_for_the_archiver(
    redis: Redis, build_id: str, sandbox_id: str, cleanup_keys: None
) -> None:
    # GIVEN an iteration's Provision reconnecting to a sandbox
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), ReconnectingRuntime(sandbox_id))
    # WHEN it runs THEN the build's meta hash says which build it iterates from
    await steps.provision(ctx)
    await ctx.streamer.close()
    assert await redis.hget(meta_key(build_id), "iterate_from") == "t-earlier-build"
    assert await redis.hget(meta_key(build_id), "sandbox_id") == sandbox_id


@dataclass
class ReconnectingRuntime(RecordingRuntime):
    """Reconnects and extends (Provision of an iteration)."""

    extended: list[int] = field(default_factory=list)

    @property
    def workspace(self) -> str:
        return "/app"

    async def start(self) -> None:
        return None

    async def extend(self, seconds: int) -> None:
        self.extended.append(seconds)


# -- finding 3: Scaffold deletes without a files record; a half-failed one leaves no stale hashes ---


class FailingWrites(LocalSandboxRuntime):
    """A local sandbox whose file writes fail (the sandbox went away half way through Scaffold)."""

    async def write_files(self, files: Mapping[str, str]) -> list[str]:
        raise SandboxUnavailable("lost the sandbox while writing files")


async def local_sandbox(
    workdir: Path, files: Mapping[str, str], runtime_type: type[LocalSandboxRuntime] = LocalSandboxRuntime
) -> LocalSandboxRuntime:
    runtime = LocalSandboxRuntime(workdir)
    await runtime.start()
    await runtime.write_files(files)
    return runtime_type(workdir, runtime.sandbox_id)


@pytest.mark.usefixtures("cleanup_keys")
async def test_scaffold_deletes_the_deleted_paths_when_the_files_record_is_missing(
    redis: Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN a sandbox holding README.md and no record of its files (evicted, lost)
    runtime = await local_sandbox(tmp_path, {"README.md": "readme", "a.txt": "a"})
    spec = iteration_spec(files={"a.txt": "a"}, deleted=["README.md"])
    ctx = context(redis, build_id, runtime.sandbox_id, spec, runtime)
    try:
        # WHEN an iteration deleting README.md scaffolds
        await steps.scaffold(ctx)
        await ctx.streamer.close()
        # THEN README.md is gone, and the log says so
        assert not (Path(runtime.workspace) / "README.md").exists()
        assert "  - README.md" in await streamed(redis, build_id)
        assert await lifetime.file_hashes(redis, runtime.sandbox_id) == {"a.txt": lifetime.content_hash("a")}
    finally:
        await runtime.kill()
        await redis.delete(sandbox_files_key(runtime.sandbox_id))


@pytest.mark.usefixtures("cleanup_keys")
async def test_a_scaffold_failing_half_way_leaves_no_stale_hash_of_the_paths_it_was_changing(
    redis: Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN a sandbox whose record says a.txt is "old" and b.txt "b"
    runtime = await local_sandbox(tmp_path, {"a.txt": "old", "b.txt": "b", "c.txt": "c"}, FailingWrites)
    await lifetime.record_files(
        redis, runtime.sandbox_id, {"a.txt": "old", "b.txt": "b", "c.txt": "c"}, (), replace=True
    )
    spec = iteration_spec(files={"a.txt": "new", "b.txt": "b"}, deleted=["c.txt"])
    ctx = context(redis, build_id, runtime.sandbox_id, spec, runtime)
    try:
        # WHEN the iteration's Scaffold fails while writing the change
        with pytest.raises(SandboxUnavailable):
            await steps.scaffold(ctx)
        await ctx.streamer.close()
        # THEN the record no longer claims a.txt is "old" nor c.txt is there (the next try writes them);
        # the untouched b.txt keeps its hash
        hashes = await lifetime.file_hashes(redis, runtime.sandbox_id)
        assert hashes == {"b.txt": lifetime.content_hash("b")}
    finally:
        await runtime.kill()
        await redis.delete(sandbox_files_key(runtime.sandbox_id))


# -- finding 4: an iteration's Start without a recorded pid never takes the old server for the new ----

SERVER = (
    "import http.server, os\n"
    "http.server.test(http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']), bind='127.0.0.1')\n"
)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.usefixtures("cleanup_keys")
async def test_start_of_an_iteration_stops_an_unrecorded_server_holding_the_port(
    redis: Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN a sandbox whose earlier dev server serves v1 on the port, and no record of its pid
    port = free_port()
    runtime = await local_sandbox(tmp_path, {"server.py": SERVER, "index.html": "v1"})
    old = await runtime.run_background("python3 -u server.py", envs={"PORT": str(port)})
    await eventually(lambda: runtime.port_open(port), what="the earlier server's port")
    try:
        await runtime.write_files({"index.html": "v2"})
        spec = iteration_spec(files={"server.py": SERVER, "index.html": "v2"}, start="python3 -u server.py", port=port)
        ctx = context(redis, build_id, runtime.sandbox_id, spec, runtime)
        # WHEN the iteration's Start runs
        result = await steps.start(ctx)
        await ctx.streamer.close()
        # THEN the old server was stopped and a new one (a new pid) serves the change
        assert old.exit_code is not None
        assert fetch(f"{result['preview_url']}/index.html") == "v2"
        pid = (await lifetime.read_state(redis, runtime.sandbox_id)).server_pid
        assert pid not in (None, old.pid)
        assert any(
            t.startswith(f"Port {port} is open and no dev server is recorded") for t in await streamed(redis, build_id)
        )
    finally:
        await runtime.kill()
        await redis.delete(sandbox_key(runtime.sandbox_id))


@pytest.mark.usefixtures("cleanup_keys")
async def test_start_of_an_iteration_fails_clearly_when_something_outside_holds_the_port(
    redis: Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN the port held by a listener that is no process of the sandbox
    runtime = await local_sandbox(tmp_path, {"server.py": SERVER})
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        spec = iteration_spec(
            files={"server.py": SERVER}, start="python3 -u server.py", port=port, timeouts={"start": 1}
        )
        ctx = context(redis, build_id, runtime.sandbox_id, spec, runtime)
        try:
            # WHEN the iteration's Start runs THEN it fails, saying the port is still held; no server started
            with pytest.raises(CommandFailed, match=f"port {port} is still held .* cannot take it"):
                await steps.start(ctx)
            await ctx.streamer.close()
            assert (await lifetime.read_state(redis, runtime.sandbox_id)).server_pid is None
        finally:
            await runtime.kill()


# -- finding 8: a sandbox E2B no longer knows is gone, not unavailable ----------------------------


@dataclass
class GoneRuntime(ReconnectingRuntime):
    """E2B answers not found when Provision reconnects (the sandbox was killed or timed out)."""

    async def start(self) -> None:
        raise SandboxGone(f"sandbox {self.sandbox_id} no longer exists")


@pytest.mark.usefixtures("cleanup_keys")
async def test_provision_records_a_sandbox_e2b_no_longer_knows_as_killed(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN a sandbox the record says is kept and serving, which E2B no longer has
    await lifetime.record_kept(redis, sandbox_id, time.time() + 600, 60)
    await lifetime.record_fields(redis, sandbox_id, {lifetime.SandboxField.SERVING: "t-earlier-build"})
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), GoneRuntime(sandbox_id))
    # WHEN an iteration's Provision reconnects THEN it fails for good (SandboxGone is never retried)
    with pytest.raises(SandboxGone):
        await steps.provision(ctx)
    await ctx.streamer.close()
    # AND the record says killed: the next iteration request is refused sandbox_gone
    state = await lifetime.read_state(redis, sandbox_id)
    assert state.killed
    assert not state.alive()


# -- finding 10: one ISO format for sandbox_expires_at ----------------------------------------------


@pytest.mark.usefixtures("cleanup_keys")
async def test_the_provision_line_and_the_api_write_sandbox_expires_at_alike(
    redis: Redis, build_id: str, sandbox_id: str
) -> None:
    # GIVEN an iteration's Provision, which records the keep-alive and says until when in its line
    ctx = context(redis, build_id, sandbox_id, iteration_spec(), ReconnectingRuntime(sandbox_id))
    await steps.provision(ctx)
    await ctx.streamer.close()
    line = next(entry_record(i, f) for i, f in await redis.xrange(logs_key(build_id)) if "sandbox_expires_at" in f)
    # WHEN GET /builds/{id} computes its sandbox facts
    facts = await sandbox_facts(redis, build_id, {"sandbox_id": sandbox_id}, None)
    # THEN both say the same instant the same way (seconds, UTC offset)
    assert facts.sandbox_expires_at == line["sandbox_expires_at"]
    assert line["text"].endswith(f"kept until {facts.sandbox_expires_at})")

"""An iteration build's E2B path, for real: the stages through the runner, the real e2b SDK, a fake envd.

Provision reconnects (``AsyncSandbox.connect``) and extends (``set_timeout``; debug mode skips the
control plane call), Scaffold writes and deletes only the changes, Install is skipped, Start stops the
earlier dev server by its pid (envd's SendSignal) and starts the new one, HealthCheck reaches it.
"""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from e2b import AsyncSandbox
from redis.asyncio import Redis

from buildlogs.keys import logs_key, sandbox_files_key, sandbox_key, sandbox_lease_key
from buildlogs.pipeline import lifetime
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.runner import run_stage
from buildlogs.pipeline.sandbox.e2b import E2BSandboxRuntime
from buildlogs.pipeline.spec_store import LocalSpecStore
from buildlogs.pipeline.stages import PIPELINE
from buildlogs.settings import Settings
from tests.support.fake_envd import FakeEnvdServer
from tests.support.sandbox import free_port

BUILD = "import shutil; shutil.rmtree('dist', ignore_errors=True); shutil.copytree('public', 'dist'); print('built')"
SERVER = (
    "import functools, http.server, os\n"
    "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory='dist')\n"
    "http.server.test(handler, port=int(os.environ['PORT']), bind='127.0.0.1')\n"
)
DEBUG_SANDBOX = "debug_sandbox_id"  # the SDK's sandbox id in debug mode


@pytest.fixture
async def clean_sandbox_record(redis: Redis) -> AsyncIterator[None]:
    keys = [sandbox_key(DEBUG_SANDBOX), sandbox_files_key(DEBUG_SANDBOX), sandbox_lease_key(DEBUG_SANDBOX)]
    await redis.delete(*keys)
    yield
    await redis.delete(*keys)


async def run_build(
    redis: Redis, settings: Settings, tmp_path: Path, spec: BuildSpec, **state: Any
) -> tuple[str, dict[str, Any]]:
    """Every stage of the happy path through the runner, as the state machine chains them."""
    build_id = f"t-{uuid.uuid4().hex[:16]}"
    spec = spec.model_copy(update={"build_id": build_id})
    event: dict[str, Any] = {
        "build_id": build_id,
        "spec_ref": LocalSpecStore(tmp_path / "specs").save(build_id, spec),
        **state,
    }

    def runtime(_settings: Settings, *, sandbox_id: str | None = None, **_: Any) -> E2BSandboxRuntime:
        return E2BSandboxRuntime(sandbox_id, workdir=str(tmp_path / "app"))

    for stage in PIPELINE:
        event = await run_stage(stage.name, event, settings=settings, redis=redis, runtime_factory=runtime)
    return build_id, event


async def texts(redis: Redis, build_id: str, phase: str) -> list[str]:
    return [fields["text"] for _id, fields in await redis.xrange(logs_key(build_id)) if fields["phase"] == phase]


def page(url: str) -> str:
    with urlopen(f"{url}/index.html", timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
def set_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``AsyncSandbox.set_timeout`` call on a sandbox (the SDK's own method still runs)."""
    calls: list[tuple[str, int]] = []
    variant = AsyncSandbox.__dict__["set_timeout"]

    async def recording(self: AsyncSandbox, timeout: int, **opts: Any) -> None:
        calls.append((self.sandbox_id, timeout))
        await variant.__get__(self, AsyncSandbox)(timeout, **opts)

    monkeypatch.setattr(AsyncSandbox, "set_timeout", recording)
    return calls


async def test_an_iteration_reconnects_extends_and_restarts_the_dev_server(
    fake_envd: FakeEnvdServer,
    e2b_debug: None,
    clean_sandbox_record: None,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    set_timeouts: list[tuple[str, int]],
) -> None:
    settings = Settings(
        redis_url=redis_url, sandbox_runtime="e2b", log_flush_interval_ms=1, sandbox_keep_alive_seconds=900
    )
    # GIVEN a first build in an E2B sandbox, serving v1
    spec = BuildSpec(
        files={"build.py": BUILD, "server.py": SERVER, "public/index.html": "v1", "notes.txt": "n"},
        install="echo installed",
        build="python3 -u build.py",
        start="python3 -u server.py",
        port=free_port(),
        healthcheck_path="/index.html",
    )
    first, state = await run_build(redis, settings, tmp_path, spec)
    assert state["sandbox_id"] == DEBUG_SANDBOX
    assert page(state["preview_url"]) == "v1"
    old_pid = (await lifetime.read_state(redis, DEBUG_SANDBOX)).server_pid
    assert old_pid is not None
    try:
        # WHEN an iteration changes the page and deletes a file, in the same sandbox
        change = BuildSpec(iterate_from=first, files={"public/index.html": "v2"}, deleted=["notes.txt"])
        second, state = await run_build(
            redis, settings, tmp_path, change.resolved_iteration(spec), sandbox_id=DEBUG_SANDBOX, iterate_from=first
        )
        # THEN Provision reconnected and extended the sandbox's life by the keep-alive (set_timeout),
        # Scaffold wrote/deleted only the changes
        assert set_timeouts == [(DEBUG_SANDBOX, 900)]
        assert (await texts(redis, second, "provision"))[1].startswith(
            f"Reconnected to sandbox {DEBUG_SANDBOX} of build {first} (iteration build; kept until "
        )
        scaffold = await texts(redis, second, "scaffold")
        assert scaffold[1:3] == ["  ~ public/index.html (2 bytes)", "  - notes.txt"]
        assert not (tmp_path / "app" / "notes.txt").exists()
        # AND Install was skipped, Start stopped the earlier server by its pid and the new one serves v2
        assert "--- Installing dependencies: skipped (no manifest changed) ---" in await texts(redis, second, "install")
        assert f"Stopping the dev server of build {first} (pid {old_pid})" in await texts(redis, second, "start")
        assert page(state["preview_url"]) == "v2"
        record = await lifetime.read_state(redis, DEBUG_SANDBOX)
        assert (record.serving, record.server_build) == (second, second)
        assert record.server_pid not in (None, old_pid)
    finally:  # never leave a dev server behind: stop the one the record names, as the next Start would
        await stop_recorded_server(redis, tmp_path)


async def stop_recorded_server(redis: Redis, tmp_path: Path) -> None:
    pid = (await lifetime.read_state(redis, DEBUG_SANDBOX)).server_pid
    if pid is not None:
        runtime = E2BSandboxRuntime(DEBUG_SANDBOX, workdir=str(tmp_path / "app"))
        await runtime.start()
        await runtime.stop_process(pid)
        await runtime.close()


async def test_an_iteration_without_a_recorded_pid_stops_the_server_on_the_port(
    fake_envd: FakeEnvdServer,
    e2b_debug: None,
    clean_sandbox_record: None,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    settings = Settings(redis_url=redis_url, sandbox_runtime="e2b", log_flush_interval_ms=1)
    # GIVEN a first build in an E2B sandbox serving v1, whose record lost the dev server's pid
    spec = BuildSpec(
        files={"build.py": BUILD, "server.py": SERVER, "public/index.html": "v1"},
        build="python3 -u build.py",
        start="python3 -u server.py",
        port=free_port(),
        healthcheck_path="/index.html",
    )
    first, state = await run_build(redis, settings, tmp_path, spec)
    await redis.hdel(sandbox_key(DEBUG_SANDBOX), "server_pid")
    try:
        # WHEN an iteration changes the page
        change = BuildSpec(iterate_from=first, files={"public/index.html": "v2"})
        second, state = await run_build(
            redis, settings, tmp_path, change.resolved_iteration(spec), sandbox_id=DEBUG_SANDBOX, iterate_from=first
        )
        # THEN Start stopped the server on the port (not taking it for the new one) and the preview serves v2
        start = await texts(redis, second, "start")
        assert any(t.startswith(f"Port {spec.port} is open and no dev server is recorded") for t in start)
        assert page(state["preview_url"]) == "v2"
    finally:
        await stop_recorded_server(redis, tmp_path)

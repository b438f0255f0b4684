"""A local sandbox shares this machine's ports: a port another process answers on fails the start."""

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from buildlogs.client.local_api import LocalLambdaContext
from buildlogs.errors import CommandFailed
from buildlogs.keys import logs_key, meta_key
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.sandbox import LocalSandboxRuntime
from buildlogs.pipeline.spec_store import LocalSpecStore
from buildlogs.settings import get_settings
from functions.stage.handler import lambda_handler
from tests.support.local_run import stream_records

SERVER = (
    "import http.server, os\n"
    "http.server.test(http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']), bind='127.0.0.1')\n"
)


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port another process (here: this test) listens on, on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


async def test_start_dev_server_fails_at_once_on_a_port_already_in_use(tmp_path: Path, occupied_port: int) -> None:
    # GIVEN a local sandbox, and another process listening on the project's port
    runtime = LocalSandboxRuntime(workdir=tmp_path)
    await runtime.start()
    started = tmp_path / "started"
    try:
        # WHEN the dev server is started on that port
        with pytest.raises(CommandFailed, match=f"port {occupied_port} is already in use on this machine"):
            await runtime.start_dev_server(
                "", {}, start_command=f"touch {started}; exec sleep 300", port=occupied_port, timeout=10
            )
        # THEN its command never ran (the health check would have reached the other process)
        assert not started.exists()
    finally:
        await runtime.kill()


async def test_start_dev_server_on_a_free_port_still_starts(tmp_path: Path) -> None:
    # GIVEN a local sandbox and a port nobody uses
    runtime = LocalSandboxRuntime(workdir=tmp_path)
    await runtime.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    try:
        # WHEN the dev server starts THEN it serves on that port
        await runtime.start_dev_server(
            "", {"server.py": SERVER}, start_command="python3 -u server.py", port=port, envs={"PORT": str(port)}
        )
        assert await runtime.port_open(port)
    finally:
        await runtime.kill()


def test_the_start_stage_fails_with_the_reason_when_the_port_is_in_use(
    tmp_path: Path, redis_url: str, build_id: str, occupied_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a provisioned build whose spec's port another process listens on
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SANDBOX_RUNTIME", "local")
    monkeypatch.setenv("LOG_FLUSH_INTERVAL_MS", "1")
    spec = BuildSpec(files={"server.py": SERVER}, start="python3 -u server.py", port=occupied_port)
    state = {"build_id": build_id, "spec_ref": LocalSpecStore(tmp_path / "specs").save(build_id, spec)}

    def invoke(stage: str, event: dict[str, str]) -> dict[str, str]:
        monkeypatch.setenv("STAGE", stage)
        get_settings.cache_clear()
        result: dict[str, str] = lambda_handler(event, LocalLambdaContext("buildlogs-stage"))
        return result

    state = invoke("scaffold", invoke("provision", state))
    try:
        # WHEN the start stage runs
        with pytest.raises(CommandFailed, match=f"port {occupied_port} is already in use on this machine"):
            invoke("start", state)
        # THEN the build's log says why, as the stage's failure
        start = [record for record in stream_records(redis_url, build_id) if record["phase"] == "start"]
        failed = [e["text"] for e in start if e.get("event") == "build_failed"]
        assert len(failed) == 1
        assert failed[0].startswith(f"BUILD FAILED: port {occupied_port} is already in use on this machine")
        assert start[-1]["event"] == "stage_end"
    finally:
        asyncio.run(LocalSandboxRuntime(sandbox_id=state["sandbox_id"]).kill())
        with sync_redis.Redis.from_url(redis_url) as rds:
            rds.delete(logs_key(build_id), meta_key(build_id))

"""Fixtures of the sandbox and stage tests: a fake envd for the real e2b SDK, runtimes, polling."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from buildlogs.pipeline.sandbox import LocalSandboxRuntime, SandboxRuntime
from tests.support.fake_envd import FakeEnvdServer


@pytest.fixture(scope="session")
def fake_envd() -> Iterator[FakeEnvdServer]:
    """envd on localhost:49983, where the SDK looks in debug mode; runs real subprocesses."""
    with FakeEnvdServer() as server:
        yield server


@pytest.fixture
def e2b_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK skips the control plane (sandbox id ``debug_sandbox_id``) and talks to the fake envd."""
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.delenv("E2B_API_KEY", raising=False)


@pytest.fixture(params=["local", "e2b"])
async def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SandboxRuntime]:
    """A started runtime of each implementation (E2B through the real SDK and the fake envd)."""
    if request.param == "local":
        sandbox: SandboxRuntime = LocalSandboxRuntime(workdir=tmp_path)
    else:
        request.getfixturevalue("fake_envd")
        monkeypatch.setenv("E2B_DEBUG", "true")
        from buildlogs.pipeline.sandbox.e2b import E2BSandboxRuntime

        sandbox = E2BSandboxRuntime(workdir=str(tmp_path / "app"))
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10, what: str = "condition") -> None:
    """Poll ``check`` until it holds, failing after ``timeout`` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)

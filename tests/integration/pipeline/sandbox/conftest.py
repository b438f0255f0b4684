"""Fixtures of the sandbox tests: a fake envd for the real e2b SDK, a started runtime of each kind."""

from collections.abc import AsyncIterator, Iterator
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

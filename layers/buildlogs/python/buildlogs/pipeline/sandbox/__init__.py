"""Sandbox runtimes behind one protocol: ``E2BSandboxRuntime`` (AWS) and ``LocalSandboxRuntime`` (local runs).

Importing this package never imports e2b: ``buildlogs.pipeline.sandbox.e2b`` loads only when an E2B runtime
is created, so the archiver, the API and local runs stay light.
"""

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from buildlogs.observability import logger
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime, is_local_sandbox_id
from buildlogs.pipeline.sandbox.protocol import (
    TIMEOUT_EXIT_CODE,
    BackgroundProcess,
    CommandResult,
    OutputCallback,
    wait_for_port,
)
from buildlogs.settings import Settings, get_settings

__all__ = [
    "TIMEOUT_EXIT_CODE",
    "BackgroundProcess",
    "CommandResult",
    "LocalSandboxRuntime",
    "OutputCallback",
    "SandboxRuntime",
    "create_runtime",
    "kill_sandbox",
    "wait_for_port",
]


@runtime_checkable
class SandboxRuntime(Protocol):
    """One build's sandbox. ``on_stdout``/``on_stderr`` get text chunks as they arrive (plain or async)."""

    @property
    def sandbox_id(self) -> str: ...

    @property
    def workspace(self) -> str:
        """The project directory: relative paths and commands without ``cwd`` resolve here."""

    async def start(self) -> None:
        """Create the sandbox, or reconnect when constructed with a sandbox id."""

    async def run_command(
        self,
        command: str,
        timeout: float = 120,  # noqa: ASYNC109 (the protocol's name)
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        envs: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run to the end; a timeout kills it and reports ``timed_out: True, exit_code: 124``."""

    async def run_background(
        self,
        command: str,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        envs: Mapping[str, str] | None = None,
    ) -> BackgroundProcess: ...

    async def start_dev_server(
        self,
        workspace_path: str,
        working_files: Mapping[str, str],
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        start_command: str,
        port: int,
        install_command: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float = 120,  # noqa: ASYNC109 (the protocol's name)
    ) -> BackgroundProcess: ...

    async def write_files(self, files: Mapping[str, str]) -> list[str]:
        """Write text files; relative paths are under the workspace. Returns the absolute paths."""

    def preview_url(self, port: int) -> str: ...

    async def port_open(self, port: int) -> bool:
        """Whether ``port`` accepts connections inside the sandbox."""

    async def kill(self) -> None:
        """Destroy the sandbox and everything running in it."""

    async def close(self) -> None:
        """Release this client's connections; the sandbox and its background processes keep running."""


def create_runtime(
    settings: Settings | None = None,
    *,
    sandbox_id: str | None = None,
    template: str = "base",
    build_id: str | None = None,
) -> SandboxRuntime:
    """The runtime of ``SANDBOX_RUNTIME`` (a ``local-…`` sandbox id is always local); call ``start()`` next."""
    settings = settings or get_settings()
    if (sandbox_id is not None and is_local_sandbox_id(sandbox_id)) or (
        sandbox_id is None and settings.sandbox_runtime == "local"
    ):
        return LocalSandboxRuntime(sandbox_id=sandbox_id, build_id=build_id)
    from buildlogs.pipeline.sandbox.e2b import E2BSandboxRuntime, resolve_api_key

    metadata = {"build_id": build_id} if build_id else None
    return E2BSandboxRuntime(sandbox_id, template=template, api_key=resolve_api_key(settings), metadata=metadata)


async def kill_sandbox(sandbox_id: str, settings: Settings | None = None) -> None:
    """Best effort: kill the sandbox ``sandbox_id`` (the archiver reaps TIMED_OUT/ABORTED runs). Never raises."""
    settings = settings or get_settings()
    try:
        if is_local_sandbox_id(sandbox_id):
            await LocalSandboxRuntime(sandbox_id=sandbox_id).kill()
        elif settings.sandbox_runtime == "e2b":
            from buildlogs.pipeline.sandbox.e2b import kill_e2b_sandbox

            await kill_e2b_sandbox(sandbox_id, settings)
        else:
            logger.warning("not killing sandbox: SANDBOX_RUNTIME is local", extra={"sandbox_id": sandbox_id[:128]})
            return
    except Exception as exc:  # best effort by contract: reaping must never fail the caller
        logger.warning("could not kill sandbox", extra={"sandbox_id": sandbox_id[:128], "error": repr(exc)[:500]})
        return
    logger.info("sandbox killed", extra={"sandbox_id": sandbox_id})

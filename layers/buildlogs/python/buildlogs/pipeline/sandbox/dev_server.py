"""Starting a dev server, shared by every runtime: write files, install, start, wait for the port."""

from collections.abc import Mapping
from typing import Protocol

from buildlogs.errors import CommandFailed
from buildlogs.pipeline.sandbox.protocol import BackgroundProcess, CommandResult, OutputCallback, wait_for_port


class _Runtime(Protocol):
    @property
    def workspace(self) -> str: ...

    async def write_files(self, files: Mapping[str, str]) -> list[str]: ...

    async def run_command(
        self,
        command: str,
        timeout: float = ...,  # noqa: ASYNC109 (the protocol's name)
        cwd: str | None = ...,
        on_stdout: OutputCallback | None = ...,
        on_stderr: OutputCallback | None = ...,
        *,
        envs: Mapping[str, str] | None = ...,
    ) -> CommandResult: ...

    async def run_background(
        self,
        command: str,
        cwd: str | None = ...,
        on_stdout: OutputCallback | None = ...,
        on_stderr: OutputCallback | None = ...,
        *,
        envs: Mapping[str, str] | None = ...,
    ) -> BackgroundProcess: ...

    async def port_open(self, port: int) -> bool: ...


class DevServerMixin:
    """``start_dev_server`` once for every runtime, built on its write/run/port primitives."""

    async def start_dev_server(
        self: _Runtime,
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
    ) -> BackgroundProcess:
        """Write ``working_files`` under ``workspace_path``, install, start in the background, wait for ``port``.

        The callbacks are forwarded to the install and start commands. Raises ``CommandFailed``.
        """
        prefix = workspace_path.rstrip("/")
        await self.write_files({f"{prefix}/{name}" if prefix else name: text for name, text in working_files.items()})
        cwd = workspace_path or None
        if install_command:
            result = await self.run_command(install_command, timeout, cwd, on_stdout, on_stderr, envs=envs)
            if result["timed_out"]:
                raise CommandFailed(f"`{install_command}` timed out after {timeout:g}s")
            if result["exit_code"] != 0:
                raise CommandFailed(f"`{install_command}` exited with code {result['exit_code']}")
        process = await self.run_background(start_command, cwd, on_stdout, on_stderr, envs=envs)
        try:
            await wait_for_port(self, port, timeout, process)
        except CommandFailed:
            await process.kill()
            raise
        return process

"""Starting a dev server, shared by every runtime: write files, install, start, wait for the port.

The one implementation: the ``start`` step calls ``runtime.start_dev_server`` too.
"""

from collections.abc import Mapping

from buildlogs.errors import CommandFailed
from buildlogs.pipeline.sandbox.protocol import (
    BackgroundProcess,
    OutputCallback,
    SandboxRuntime,
    require_success,
    wait_for_port,
)


class DevServerMixin:
    """``start_dev_server`` once for every runtime, built on its write/run/port primitives."""

    async def start_dev_server(
        self: SandboxRuntime,
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

        An empty ``workspace_path`` is the runtime's workspace. The callbacks are forwarded to the
        install and start commands; ``timeout`` bounds the install and, separately, the wait for the
        port. Raises ``CommandFailed`` (the server is killed first when it never opens the port).
        """
        prefix = workspace_path.rstrip("/")
        if working_files:
            await self.write_files({f"{prefix}/{n}" if prefix else n: text for n, text in working_files.items()})
        cwd = workspace_path or None
        if install_command:
            result = await self.run_command(install_command, timeout, cwd, on_stdout, on_stderr, envs=envs)
            require_success(result, install_command, timeout, "install")
        process = await self.run_background(start_command, cwd, on_stdout, on_stderr, envs=envs)
        try:
            await wait_for_port(self, port, timeout, process)
        except CommandFailed:
            await process.kill()
            raise
        return process

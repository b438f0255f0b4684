"""E2BSandboxRuntime: the sandbox protocol over ``e2b.AsyncSandbox`` (imported lazily by buildlogs.pipeline.sandbox).

Provision creates the sandbox; every later stage reconnects with ``AsyncSandbox.connect(id)``.
Commands always start in the background so a timeout can kill them (envd keeps a process
running when its client goes away); a non-zero exit is a result, not an exception. The API key
is handed to the SDK only, never logged.
"""

import asyncio
import contextlib
import shlex
from collections.abc import Mapping
from typing import Any, cast

from e2b import AsyncSandbox
from e2b.exceptions import NotFoundException, SandboxException
from e2b.sandbox.commands.command_handle import CommandExitException
from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

from buildlogs.errors import SandboxGone, SandboxUnavailable
from buildlogs.pipeline.sandbox.dev_server import DevServerMixin
from buildlogs.pipeline.sandbox.protocol import TIMEOUT_EXIT_CODE, CommandResult, OutputCallback
from buildlogs.settings import Settings

E2B_WORKDIR = "/home/user/app"
SANDBOX_LIFETIME_SECONDS = 3600  # E2B kills it after this unless cleanup or the archiver does first
STREAM_GRACE_SECONDS = 30  # the command stream outlives the command's own timeout by this much
PORT_PROBE_TIMEOUT_SECONDS = 5


def resolve_api_key(settings: Settings) -> str | None:
    """``E2B_API_KEY`` locally; in AWS the Secrets Manager secret (Powertools parameters, cached)."""
    if settings.e2b_api_key:
        return settings.e2b_api_key
    if settings.e2b_api_key_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(settings.e2b_api_key_secret_arn, max_age=300))
    return None


class E2BBackgroundProcess:
    """A command running in the background of an E2B sandbox."""

    def __init__(self, handle: AsyncCommandHandle[Any]) -> None:
        self._handle = handle

    @property
    def pid(self) -> int:
        return int(self._handle.pid)

    @property
    def exit_code(self) -> int | None:
        code = self._handle.exit_code
        return None if code is None else int(code)

    async def kill(self) -> None:
        with contextlib.suppress(SandboxException):
            await self._handle.kill()
        await self._handle.disconnect()

    async def detach(self) -> None:
        """Stop receiving its output; it keeps running in the sandbox."""
        await self._handle.disconnect()


class E2BSandboxRuntime(DevServerMixin):
    """One E2B sandbox: created by ``start()``, or reconnected when built with a ``sandbox_id``."""

    def __init__(
        self,
        sandbox_id: str | None = None,
        *,
        template: str = "base",
        api_key: str | None = None,
        workdir: str = E2B_WORKDIR,
        metadata: Mapping[str, str] | None = None,
        lifetime_seconds: int = SANDBOX_LIFETIME_SECONDS,
    ) -> None:
        self._sandbox_id = sandbox_id
        self._template = template
        self._api_key = api_key
        self._workdir = workdir
        self._metadata = dict(metadata or {})
        self._lifetime = lifetime_seconds
        self._sandbox: AsyncSandbox | None = None
        self._background: list[E2BBackgroundProcess] = []

    def _opts(self) -> dict[str, Any]:
        return {"api_key": self._api_key} if self._api_key else {}

    @property
    def sandbox_id(self) -> str:
        if self._sandbox is not None:
            return str(self._sandbox.sandbox_id)
        if self._sandbox_id is None:
            raise RuntimeError("the sandbox is not started")
        return self._sandbox_id

    @property
    def workspace(self) -> str:
        return self._workdir

    @property
    def _sbx(self) -> AsyncSandbox:
        if self._sandbox is None:
            raise RuntimeError("the sandbox is not started")
        return self._sandbox

    async def start(self) -> None:
        try:
            if self._sandbox_id is not None:
                self._sandbox = await AsyncSandbox.connect(self._sandbox_id, **self._opts())
                return
            self._sandbox = await AsyncSandbox.create(
                template=self._template, timeout=self._lifetime, metadata=self._metadata, **self._opts()
            )
        except NotFoundException as exc:  # killed, or its timeout ran out: retrying cannot bring it back
            raise SandboxGone(f"sandbox {self._sandbox_id} no longer exists: {exc}") from exc
        except SandboxException as exc:
            raise SandboxUnavailable(f"the E2B sandbox is unavailable: {type(exc).__name__}: {exc}") from exc
        result = await self.run_command(f"mkdir -p {shlex.quote(self._workdir)}", timeout=30, cwd="/")
        if result["exit_code"] != 0:
            raise SandboxUnavailable(f"could not create {self._workdir} in the sandbox: {result['stderr'][-500:]}")

    async def kill(self) -> None:
        for process in self._background:
            await process.detach()
        try:
            if self._sandbox is not None:
                await self._sandbox.kill()
            elif self._sandbox_id is not None:
                await AsyncSandbox.kill(self._sandbox_id, **self._opts())
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not kill sandbox {self.sandbox_id}: {exc}") from exc

    async def close(self) -> None:
        for process in self._background:
            await process.detach()

    def _cwd(self, cwd: str | None) -> str:
        """Relative directories are under the workspace (as in LocalSandboxRuntime)."""
        if not cwd:
            return self._workdir
        return cwd if cwd.startswith("/") else f"{self._workdir.rstrip('/')}/{cwd}"

    async def _start(
        self,
        command: str,
        cwd: str | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
        envs: Mapping[str, str] | None,
        stream_timeout: float,
    ) -> AsyncCommandHandle[Any]:
        try:
            handle: AsyncCommandHandle[Any] = await self._sbx.commands.run(
                command,
                background=True,
                envs=dict(envs or {}),
                cwd=self._cwd(cwd),
                on_stdout=cast(Any, on_stdout),
                on_stderr=cast(Any, on_stderr),
                timeout=stream_timeout,
            )
            return handle
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not start a command in the sandbox: {exc}") from exc

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
        handle = await self._start(command, cwd, on_stdout, on_stderr, envs, timeout + STREAM_GRACE_SECONDS)
        try:
            result = await asyncio.wait_for(handle.wait(), timeout)
        except CommandExitException as exc:
            return {
                "exit_code": int(exc.exit_code),
                "stdout": exc.stdout or "",
                "stderr": exc.stderr or "",
                "timed_out": False,
            }
        except TimeoutError:
            with contextlib.suppress(SandboxException):
                await handle.kill()
            await handle.disconnect()
            return {
                "exit_code": TIMEOUT_EXIT_CODE,
                "stdout": handle.stdout or "",
                "stderr": handle.stderr or "",
                "timed_out": True,
            }
        except SandboxException as exc:
            raise SandboxUnavailable(f"lost the sandbox while running a command: {exc}") from exc
        return {
            "exit_code": int(result.exit_code),
            "stdout": result.stdout or "",
            "stderr": result.stderr or "",
            "timed_out": False,
        }

    async def run_background(
        self,
        command: str,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        envs: Mapping[str, str] | None = None,
    ) -> E2BBackgroundProcess:
        handle = await self._start(command, cwd, on_stdout, on_stderr, envs, 0)
        process = E2BBackgroundProcess(handle)
        self._background.append(process)
        return process

    async def write_files(self, files: Mapping[str, str]) -> list[str]:
        entries = []
        for name, text in files.items():
            path = name if name.startswith("/") else f"{self._workdir.rstrip('/')}/{name}"
            entries.append({"path": path, "data": text})
        if not entries:
            return []
        try:
            written = await self._sbx.files.write_files(entries)  # type: ignore[arg-type]
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not write files into the sandbox: {exc}") from exc
        return [info.path for info in written]

    async def remove_files(self, paths: list[str]) -> None:
        """``rm -f`` in the workspace (one command: a round trip per file would be slow)."""
        if not paths:
            return
        command = "rm -f -- " + " ".join(shlex.quote(path) for path in paths)
        result = await self.run_command(command, timeout=60)
        if result["exit_code"] != 0:
            raise SandboxUnavailable(f"could not delete files in the sandbox: {result['stderr'][-500:]}")

    async def stop_process(self, pid: int) -> None:
        """SIGKILL the process (envd signals its process group); gone already is fine."""
        try:
            await self._sbx.commands.kill(pid)
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not stop process {pid} in the sandbox: {exc}") from exc

    async def stop_background_processes(self) -> None:
        """SIGKILL every process envd runs in the sandbox (its ``commands.list()``): all of them are ours."""
        try:
            for info in await self._sbx.commands.list():
                await self._sbx.commands.kill(info.pid)  # False: it ended meanwhile
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not stop the processes of sandbox {self.sandbox_id}: {exc}") from exc
        for process in self._background:
            await process.detach()

    async def extend(self, seconds: int) -> None:
        """``set_timeout``: E2B keeps the sandbox ``seconds`` from now (instead of its earlier deadline)."""
        try:
            await self._sbx.set_timeout(seconds)
        except NotFoundException as exc:
            raise SandboxGone(f"sandbox {self.sandbox_id} no longer exists: {exc}") from exc
        except SandboxException as exc:
            raise SandboxUnavailable(f"could not extend sandbox {self.sandbox_id}: {exc}") from exc

    def preview_url(self, port: int) -> str:
        scheme = "http" if self._sbx.connection_config.debug else "https"
        return f"{scheme}://{self._sbx.get_host(port)}"

    async def port_open(self, port: int) -> bool:
        probe = f"(exec 3<>/dev/tcp/127.0.0.1/{int(port)}) 2>/dev/null"
        result = await self.run_command(probe, timeout=PORT_PROBE_TIMEOUT_SECONDS, cwd="/")
        return result["exit_code"] == 0


async def kill_e2b_sandbox(sandbox_id: str, settings: Settings) -> None:
    """Kill a sandbox by id without connecting to it (the archiver reaps abandoned runs)."""
    await E2BSandboxRuntime(sandbox_id, api_key=resolve_api_key(settings)).kill()

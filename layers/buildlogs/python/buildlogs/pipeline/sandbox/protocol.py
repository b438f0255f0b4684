"""The sandbox protocol (``SandboxRuntime``) and what every runtime shares: result shape, callbacks, ports."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol, TypedDict, runtime_checkable

from buildlogs.errors import CommandFailed

# A callback receives text chunks (not lines) as they arrive; it may be plain or async.
OutputCallback = Callable[[str], Awaitable[object] | object]

TIMEOUT_EXIT_CODE = 124  # what `timeout(1)` reports, so a timed-out command looks the same everywhere
# A port is polled fast at first, then less often: a dev server usually opens (or an old one lets
# go of) its port within milliseconds, and a fixed 200 ms poll was most of an iteration's Start.
PORT_POLL_FIRST_S = 0.005
PORT_POLL_MAX_S = 0.2


class CommandResult(TypedDict):
    """A finished (or timed-out) command."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool


class BackgroundProcess(Protocol):
    """A command left running in the sandbox (the dev server)."""

    @property
    def pid(self) -> int: ...

    @property
    def exit_code(self) -> int | None:
        """``None`` while it runs (as far as this client can tell)."""

    async def kill(self) -> None: ...


async def emit(callback: OutputCallback | None, chunk: str) -> None:
    """Call ``callback`` with ``chunk``, awaiting it if it is async; ``None`` is a no-op."""
    if callback is None or not chunk:
        return
    result = callback(chunk)
    if inspect.isawaitable(result):
        await result


def port_poll_delays() -> Iterator[float]:
    """The pauses between port probes: 5 ms, doubling up to 200 ms, then 200 ms for ever."""
    delay = PORT_POLL_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, PORT_POLL_MAX_S)


class _PortProbe(Protocol):
    async def port_open(self, port: int) -> bool: ...


async def wait_for_port(
    runtime: _PortProbe,
    port: int,
    timeout: float,  # noqa: ASYNC109 (a deadline with a fail-fast check, not a plain timeout)
    process: BackgroundProcess | None = None,
) -> None:
    """Return once ``port`` accepts connections inside the sandbox; raise ``CommandFailed`` if it never does.

    Fails fast (with the exit code) when ``process`` exits before opening the port.
    """
    deadline = time.monotonic() + timeout
    delays = port_poll_delays()
    while True:
        if process is not None and process.exit_code is not None:
            raise CommandFailed(f"the dev server exited with code {process.exit_code} before port {port} opened")
        if await runtime.port_open(port):
            return
        if time.monotonic() >= deadline:
            raise CommandFailed(f"the dev server did not open port {port} within {timeout:g}s")
        await asyncio.sleep(next(delays))


def require_success(result: CommandResult, command: str, timeout: float, what: str) -> None:
    """Raise ``CommandFailed`` (with the exit code) unless ``result`` is a zero exit; ``what``: ``install``, ..."""
    if result["timed_out"]:
        raise CommandFailed(f"{what} command timed out after {timeout:g}s: {command}", result["exit_code"])
    if result["exit_code"] != 0:
        raise CommandFailed(f"{what} command exited with code {result['exit_code']}: {command}", result["exit_code"])


def merged_env(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """``base`` overlaid with ``extra`` (the spec's env)."""
    return {**base, **(extra or {})}


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
    ) -> BackgroundProcess:
        """Write files, install, start ``start_command`` in the background, wait for ``port`` (``DevServerMixin``)."""

    async def write_files(self, files: Mapping[str, str]) -> list[str]:
        """Write text files; relative paths are under the workspace. Returns the absolute paths."""

    async def remove_files(self, paths: list[str]) -> None:
        """Delete files (relative paths are under the workspace); a missing one is no error."""

    async def stop_process(self, pid: int) -> None:
        """Stop a background process this sandbox started (by its pid, as recorded), and its children."""

    async def stop_background_processes(self) -> None:
        """Stop every background process running in the sandbox (the dev servers it holds; an
        iteration's Start does this when the port is open and no recorded pid names its server)."""

    async def extend(self, seconds: int) -> None:
        """Keep the sandbox ``seconds`` from now (E2B: ``set_timeout``); the local one is kept until reaped."""

    def preview_url(self, port: int) -> str: ...

    async def port_open(self, port: int) -> bool:
        """Whether ``port`` accepts connections inside the sandbox."""

    async def kill(self) -> None:
        """Destroy the sandbox and everything running in it."""

    async def close(self) -> None:
        """Release this client's connections; the sandbox and its background processes keep running."""

"""What every sandbox runtime shares: result shape, callback calling, waiting for a port."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypedDict

from buildlogs.errors import CommandFailed

# A callback receives text chunks (not lines) as they arrive; it may be plain or async.
OutputCallback = Callable[[str], Awaitable[object] | object]

TIMEOUT_EXIT_CODE = 124  # what `timeout(1)` reports, so a timed-out command looks the same everywhere
PORT_POLL_INTERVAL_S = 0.2


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
    while True:
        if process is not None and process.exit_code is not None:
            raise CommandFailed(f"the dev server exited with code {process.exit_code} before port {port} opened")
        if await runtime.port_open(port):
            return
        if time.monotonic() >= deadline:
            raise CommandFailed(f"the dev server did not open port {port} within {timeout:g}s")
        await asyncio.sleep(PORT_POLL_INTERVAL_S)


def merged_env(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """``base`` overlaid with ``extra`` (the spec's env)."""
    return {**base, **(extra or {})}

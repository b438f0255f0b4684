"""Helpers of the sandbox and stage tests: a free local port, polling with a deadline."""

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
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

"""Helpers to look at a build's stream the way readers see it."""

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from buildlogs.keys import logs_key
from buildlogs.stream.entries import LogEntry


async def entries(redis: Redis, build_id: str) -> list[LogEntry]:
    """Every entry of the build's stream, in order."""
    raw: Any = await redis.xrange(logs_key(build_id))
    return [LogEntry.from_stream(entry_id, fields) for entry_id, fields in raw]


async def lines(redis: Redis, build_id: str) -> list[tuple[str, str]]:
    """The ``(source, text)`` of every non-system entry, in order."""
    return [(e.source, e.text) for e in await entries(redis, build_id) if e.source != "system"]


async def wait_for_blocked_reader(redis: Redis, timeout: float = 10.0) -> None:
    """Until the server shows a client blocked in XREAD: polls the server's view, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = await redis.client_list()
        if any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in clients):
            return
        await asyncio.sleep(0)
    raise AssertionError("no client ever blocked in XREAD")


class CountingRedis:
    """A real client whose pipelines count their round trips (``execute`` calls)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.round_trips = 0
        self.commands_per_trip: list[int] = []

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def counted_execute(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            self.commands_per_trip.append(len(pipe.command_stack))
            return await execute(*args, **kwargs)

        pipe.execute = counted_execute  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

"""The local run's embedded Redis: one in-memory fakeredis server per process (never in Lambda)."""

import fakeredis
from redis.asyncio import Redis

from buildlogs import clients

_server: fakeredis.FakeServer | None = None


def embedded_redis() -> Redis:
    """A new client of the process's one embedded server (clients are per event loop)."""
    global _server
    if _server is None:
        _server = fakeredis.FakeServer()
    client: Redis = fakeredis.FakeAsyncRedis(server=_server, decode_responses=True)
    return client


def install() -> None:
    """Make :func:`buildlogs.clients.create_redis` fall back to the embedded server without ``REDIS_URL``."""
    clients.use_embedded_redis(embedded_redis)


def uninstall() -> None:
    """Undo :func:`install`: without ``REDIS_URL``, :func:`buildlogs.clients.create_redis` fails again."""
    clients.use_embedded_redis(None)

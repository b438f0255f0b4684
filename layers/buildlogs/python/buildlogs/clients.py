"""The one Redis connection factory: a plain client locally, RedisCluster for ElastiCache Serverless.

Clients from ``redis.asyncio`` belong to the event loop that created them: create one per
``asyncio.run()`` (cheap), never at import time.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fakeredis

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from buildlogs.settings import Settings, get_settings

# XREAD BLOCK waits up to 20 s (the API's longest wait): reads must be allowed longer than that.
SOCKET_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 2.0


def create_redis(settings: Settings | None = None) -> "Redis | RedisCluster":
    """A ``redis.asyncio`` client for ``REDIS_URL`` (cluster mode when ``REDIS_CLUSTER``).

    With no ``REDIS_URL`` (a local run) it returns an embedded fakeredis server.
    """
    settings = settings or get_settings()
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        # A few quick retries (a warm Lambda's stale connection, a cluster client's connections
        # reset while it discovers the slots) with short backoff instead of redis-py's default of
        # up to 10 s; the streamer bounds each write itself, so a hung Redis never holds a stage.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
    }
    if not settings.redis_url:
        return _embedded_redis()
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **common)
    return Redis.from_url(settings.redis_url, **common)


def _embedded_redis() -> Redis:
    """A client of the process's one in-memory fakeredis server (local runs only, never in Lambda)."""
    global _embedded_server
    import fakeredis

    if _embedded_server is None:
        _embedded_server = fakeredis.FakeServer()
    client: Redis = fakeredis.FakeAsyncRedis(server=_embedded_server, decode_responses=True)
    return client


_embedded_server: "fakeredis.FakeServer | None" = None

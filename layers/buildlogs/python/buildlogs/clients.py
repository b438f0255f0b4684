"""Client factories: Redis (plain or cluster), and one cached boto3 client per AWS service.

Clients from ``redis.asyncio`` belong to the event loop that created them: create one per
``asyncio.run()`` (cheap), never at import time. boto3 clients are thread-safe and cached per
process, with the retry configuration written once here. Logic never builds clients itself: it
takes them as arguments (tests pass moto's or a real server's).
"""

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from buildlogs.settings import Settings, get_settings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient

# XREAD BLOCK waits up to 20 s (the API's longest wait): reads must be allowed longer than that.
SOCKET_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 2.0
# AWS calls: the SDK's standard retry mode (throttling, 5xx, connection errors), 3 attempts.
AWS_MAX_ATTEMPTS = 3
# S3/Step Functions error codes that mean "no such object / execution".
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "ExecutionDoesNotExist"})

# What a part that makes its own Redis clients takes (tests pass a real server's or fakeredis's).
RedisFactory = Callable[[Settings], "Redis | RedisCluster"]
_fallback_redis: "Callable[[], Redis] | None" = None


def create_redis(settings: Settings | None = None) -> "Redis | RedisCluster":
    """A ``redis.asyncio`` client for ``REDIS_URL`` (cluster mode when ``REDIS_CLUSTER``).

    With no ``REDIS_URL`` only a local run has a Redis: the embedded one it registered with
    :func:`use_embedded_redis`. A Lambda without ``REDIS_URL`` is misconfigured: a clear error.
    """
    settings = settings or get_settings()
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        # The one retry layer for Redis commands: a few quick retries (a warm Lambda's stale
        # connection, a cluster client's connections reset while it discovers the slots) with
        # short backoff instead of redis-py's default of up to 10 s. The streamer bounds each
        # write with a deadline on top of this, so a hung Redis never holds a stage.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
    }
    if not settings.redis_url:
        if _fallback_redis is None:
            raise RuntimeError("REDIS_URL is not set (only a local run has an embedded Redis)")
        return _fallback_redis()
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **common)
    return Redis.from_url(settings.redis_url, **common)


def use_embedded_redis(factory: "Callable[[], Redis] | None") -> None:
    """Register the client factory :func:`create_redis` uses when ``REDIS_URL`` is empty.

    Only the local run (``buildlogs.client``) calls it, so no Lambda code path imports fakeredis.
    """
    global _fallback_redis
    _fallback_redis = factory


def _aws_config() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": AWS_MAX_ATTEMPTS})


@cache
def s3_client() -> "S3Client":
    """The process's S3 client (cached: a warm Lambda reuses its connections)."""
    import boto3

    client: S3Client = boto3.client("s3", config=_aws_config())
    return client


@cache
def sfn_client() -> "SFNClient":
    """The process's Step Functions client (cached)."""
    import boto3

    client: SFNClient = boto3.client("stepfunctions", config=_aws_config())
    return client


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` says the S3 object or the execution does not exist."""
    return error_code(exc) in NOT_FOUND_CODES

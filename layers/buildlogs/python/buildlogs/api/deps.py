"""The API's clients, made lazily: boto3 clients once per container, Redis once per request.

A ``redis.asyncio`` client belongs to the event loop that made it, and every log request runs
its own ``asyncio.run``: so Redis clients are created inside that run and closed after it.
Tests replace the attributes of :data:`deps` (moto clients, a real Redis factory, settings).
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.clients import create_redis
from buildlogs.settings import Settings, get_settings

RedisFactory = Callable[[Settings], "Redis | RedisCluster"]


@dataclass
class Dependencies:
    """What the routes need; ``None`` means: make the default on first use."""

    settings: Settings | None = None
    sfn: Any = None
    s3: Any = None
    redis_factory: RedisFactory = create_redis

    def get_settings(self) -> Settings:
        return self.settings or get_settings()

    def stepfunctions(self) -> Any:
        if self.sfn is None:
            self.sfn = _boto3_client("stepfunctions")
        return self.sfn

    def s3_client(self) -> Any:
        if self.s3 is None:
            self.s3 = _boto3_client("s3")
        return self.s3

    @asynccontextmanager
    async def redis(self) -> AsyncIterator["Redis | RedisCluster"]:
        client = self.redis_factory(self.get_settings())
        try:
            yield client
        finally:
            await client.aclose()

    def reset(self) -> None:
        self.settings, self.sfn, self.s3, self.redis_factory = None, None, None, create_redis


def _boto3_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 3}))


deps = Dependencies()

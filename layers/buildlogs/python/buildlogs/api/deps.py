"""The API's clients, made lazily: boto3 clients once per process (cached in ``buildlogs.clients``),
Redis once per request.

A ``redis.asyncio`` client belongs to the event loop that made it, and every log request runs
its own ``asyncio.run``: so Redis clients are created inside that run and closed after it.
Tests replace the attributes of :data:`deps` (moto clients, a real Redis factory, settings).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.clients import RedisFactory, create_redis, s3_client, sfn_client
from buildlogs.settings import Settings, get_settings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient


@dataclass
class Dependencies:
    """What the routes need; ``None`` means: make the default on first use."""

    settings: Settings | None = None
    sfn: "SFNClient | None" = None
    s3: "S3Client | None" = None
    redis_factory: RedisFactory = create_redis

    def get_settings(self) -> Settings:
        return self.settings or get_settings()

    def stepfunctions(self) -> "SFNClient":
        return self.sfn if self.sfn is not None else sfn_client()

    def s3_client(self) -> "S3Client":
        return self.s3 if self.s3 is not None else s3_client()

    @asynccontextmanager
    async def redis(self) -> AsyncIterator["Redis | RedisCluster"]:
        client = self.redis_factory(self.get_settings())
        try:
            yield client
        finally:
            await client.aclose()

    def reset(self) -> None:
        self.settings, self.sfn, self.s3, self.redis_factory = None, None, None, create_redis


deps = Dependencies()

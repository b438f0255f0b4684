"""Fixtures shared by the integration tests: the API on moto, moto S3, a build's stream cleanup, a Redis Cluster."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.keys import logs_key, meta_key
from tests.support.api import Api, moto_api
from tests.support.archive import moto_s3
from tests.support.redis_servers import RedisServer, redis_cluster


@pytest.fixture
def api(redis_url: str) -> Iterator[Api]:
    """The API with moto (state machine, sources and archive buckets) and the real Redis."""
    with moto_api(redis_url) as api:
        yield api


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 client with the archive bucket."""
    with moto_s3() as client:
        yield client


@pytest.fixture
async def stream_cleanup(redis: Redis, build_id: str) -> AsyncIterator[None]:
    """Delete the build's keys afterwards: the shared Redis keeps no test data."""
    yield
    await redis.delete(logs_key(build_id), meta_key(build_id))


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    """A real 3-node Redis Cluster on free ports (ElastiCache Serverless mode), one per test module."""
    with redis_cluster(3) as servers:
        yield servers

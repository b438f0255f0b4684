"""Shared fixtures: a real Redis (REDIS_URL; fails, never skips, when absent), fakeredis, ids."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from buildlogs.settings import get_settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Powertools Metrics cannot flush without a namespace; the stack sets it, so must the tests.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "buildlogs-tests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "buildlogs-tests")


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Settings are cached per process: each test sees the environment it sets."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis of REDIS_URL (CI starts one). Unreachable is a failure, never a skip."""
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    try:
        sync_redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except sync_redis.RedisError as exc:
        pytest.fail(
            f"these tests need a real Redis at {url} ({exc}); start one with "
            "`redis-server --daemonize yes --port 6379 --save '' --appendonly no` or run .ci/run"
        )
    return url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A ``redis.asyncio`` client of the real server, made on the test's own event loop."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    """An in-memory fakeredis client, for tests about logic only."""
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def build_id() -> str:
    """A unique, valid build id, so tests sharing one Redis never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:16]}"

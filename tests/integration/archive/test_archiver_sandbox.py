"""The archiver's end of a build's sandbox use (issue 12): it gives back the iteration lease and, for a
run that never reached its Catch (TIMED_OUT/ABORTED), kills the sandbox only under the lifetime rule."""

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import meta_key, sandbox_files_key, sandbox_key, sandbox_lease_key
from buildlogs.pipeline import lifetime
from tests.support.archive import BUCKET, KillRecorder, write_lines

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600


@pytest.fixture
async def sandbox_id(redis: Redis) -> AsyncIterator[str]:
    sid = f"sbx-{uuid.uuid4().hex[:12]}"
    yield sid
    await redis.delete(sandbox_key(sid), sandbox_files_key(sid), sandbox_lease_key(sid))


async def provisioned(redis: Redis, build_id: str, sandbox_id: str, iterate_from: str | None = None) -> None:
    """What Provision records in the build's meta hash."""
    await write_lines(redis, build_id, 3, phase="build")
    fields = {"sandbox_id": sandbox_id, **({"iterate_from": iterate_from} if iterate_from else {})}
    await redis.hset(meta_key(build_id), mapping=fields)


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
async def test_an_uncaught_iteration_keeps_its_sandbox_when_the_record_cannot_vouch(
    redis: Redis, s3: Any, build_id: str, sandbox_id: str, status: str
) -> None:
    # GIVEN an iteration holding the lease in a sandbox whose record is gone (evicted, lost)
    await provisioned(redis, build_id, sandbox_id, iterate_from="t-earlier")
    assert await lifetime.acquire_lease(redis, sandbox_id, build_id) == build_id
    kill = KillRecorder()
    # WHEN the run times out / is aborted and the archiver ends it
    await archive_logs(redis, s3, BUCKET, build_id, status, kill_sandbox=kill, ttl_seconds=TTL)
    # THEN the sandbox (serving the earlier, succeeded build) is kept and the lease is given back
    assert kill.killed == []
    assert await lifetime.lease_holder(redis, sandbox_id) is None


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
async def test_an_uncaught_iteration_keeps_a_kept_sandbox_without_serving(
    redis: Redis, s3: Any, build_id: str, sandbox_id: str, status: str
) -> None:
    # GIVEN an iteration whose sandbox is kept but whose record has no `serving`
    await provisioned(redis, build_id, sandbox_id, iterate_from="t-earlier")
    await lifetime.record_kept(redis, sandbox_id, time.time() + 600, 60)
    kill = KillRecorder()
    # WHEN the archiver ends it THEN the sandbox is kept
    await archive_logs(redis, s3, BUCKET, build_id, status, kill_sandbox=kill, ttl_seconds=TTL)
    assert kill.killed == []
    assert not (await lifetime.read_state(redis, sandbox_id)).killed


async def test_an_uncaught_iteration_kills_a_lapsed_sandbox(
    redis: Redis, s3: Any, build_id: str, sandbox_id: str
) -> None:
    # GIVEN an iteration whose sandbox's keep-alive has lapsed (the record says so)
    await provisioned(redis, build_id, sandbox_id, iterate_from="t-earlier")
    await lifetime.record_kept(redis, sandbox_id, time.time() - 1, 60)
    await lifetime.record_fields(redis, sandbox_id, {lifetime.SandboxField.SERVING: "t-earlier"})
    kill = KillRecorder()
    # WHEN the archiver ends it THEN it is killed and recorded so
    await archive_logs(redis, s3, BUCKET, build_id, "TIMED_OUT", kill_sandbox=kill, ttl_seconds=TTL)
    assert kill.killed == [sandbox_id]
    assert (await lifetime.read_state(redis, sandbox_id)).killed


@pytest.mark.parametrize("status", ["TIMED_OUT", "ABORTED"])
async def test_an_uncaught_first_build_keeps_a_sandbox_another_build_serves(
    redis: Redis, s3: Any, build_id: str, sandbox_id: str, status: str
) -> None:
    # GIVEN a sandbox another succeeded build serves from, kept
    await provisioned(redis, build_id, sandbox_id)
    await lifetime.record_kept(redis, sandbox_id, time.time() + 600, 60)
    await lifetime.record_fields(redis, sandbox_id, {lifetime.SandboxField.SERVING: "t-other"})
    kill = KillRecorder()
    # WHEN this build's run ends uncaught THEN the served sandbox is kept
    await archive_logs(redis, s3, BUCKET, build_id, status, kill_sandbox=kill, ttl_seconds=TTL)
    assert kill.killed == []


async def test_a_failed_build_gives_back_its_lease_and_kills_nothing(
    redis: Redis, s3: Any, build_id: str, sandbox_id: str
) -> None:
    # GIVEN an iteration holding the lease (its Cleanup never released it)
    await provisioned(redis, build_id, sandbox_id, iterate_from="t-earlier")
    await lifetime.acquire_lease(redis, sandbox_id, build_id)
    kill = KillRecorder()
    # WHEN its FAILED run is archived THEN the lease is free again and nothing is killed (Cleanup ran)
    await archive_logs(redis, s3, BUCKET, build_id, "FAILED", kill_sandbox=kill, ttl_seconds=TTL)
    assert await lifetime.lease_holder(redis, sandbox_id) is None
    assert kill.killed == []

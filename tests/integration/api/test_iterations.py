"""POST /builds with iterate_from against moto and the real Redis (issue 12): the lease, idempotent
resubmits, a failed StartExecution, an invalid change.

moto's executions of the test machine stay RUNNING (or ABORTED once stopped); the earlier build is
made SUCCEEDED, with its sandbox in the output, by a thin wrapper of the Step Functions client.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from redis.asyncio import Redis

from buildlogs.api.deps import deps
from buildlogs.keys import sandbox_files_key, sandbox_key, sandbox_lease_key, spec_key
from buildlogs.pipeline import lifetime
from tests.support.api import SOURCES, Api, spec


class SucceededEarlier:
    """The moto Step Functions client, except that ``earlier`` SUCCEEDED in ``sandbox_id`` and that
    StartExecution can be made to fail."""

    def __init__(self, client: Any, earlier: str, sandbox_id: str) -> None:
        self._client, self._earlier, self._sandbox_id = client, earlier, sandbox_id
        self.fail_start = False

    def describe_execution(self, **kwargs: Any) -> dict[str, Any]:
        described = dict(self._client.describe_execution(**kwargs))
        if described["name"] == self._earlier:
            described.update(status="SUCCEEDED", output=f'{{"sandbox_id": "{self._sandbox_id}"}}')
        return described

    def start_execution(self, **kwargs: Any) -> Any:
        if self.fail_start:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "StartExecution")
        return self._client.start_execution(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def run(redis_url: str, work: Any) -> Any:
    async def go() -> Any:
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def earlier(api: Api, redis_url: str) -> Iterator[tuple[str, str, SucceededEarlier]]:
    """A SUCCEEDED build whose sandbox is kept: its id, its sandbox id and the wrapped client."""
    build_id, sandbox_id = f"t-{uuid.uuid4().hex[:16]}", f"sbx-{uuid.uuid4().hex[:12]}"
    assert api.call("POST", "/builds", spec(build_id=build_id, files={"a.txt": "a", "b.txt": "b"})).status == 202
    run(redis_url, lambda c: lifetime.record_kept(c, sandbox_id, time.time() + 600, 60))
    wrapped = SucceededEarlier(api.sfn, build_id, sandbox_id)
    deps.sfn = wrapped  # type: ignore[assignment]
    yield build_id, sandbox_id, wrapped
    run(
        redis_url,
        lambda c: c.delete(sandbox_key(sandbox_id), sandbox_files_key(sandbox_id), sandbox_lease_key(sandbox_id)),
    )


def iteration(earlier: str, **changes: Any) -> dict[str, Any]:
    return {"iterate_from": earlier, "files": {"a.txt": "A"}, **changes}


def holder(redis_url: str, sandbox_id: str) -> str | None:
    return run(redis_url, lambda c: lifetime.lease_holder(c, sandbox_id))  # type: ignore[no-any-return]


def test_a_running_holder_keeps_the_lease_however_old_it_is(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN an iteration running in the sandbox, its lease taken long ago
    first, sandbox_id, _ = earlier
    running = api.call("POST", "/builds", iteration(first))
    assert running.status == 202
    run(redis_url, lambda c: c.expire(sandbox_lease_key(sandbox_id), 30))
    # WHEN another iteration is asked for THEN 409 iteration_running
    refused = api.call("POST", "/builds", iteration(first, files={"b.txt": "B"}))
    assert (refused.status, refused.body["error"]) == (409, "iteration_running")
    assert holder(redis_url, sandbox_id) == running.body["build_id"]


def test_a_holder_that_ended_without_releasing_is_taken_over(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN an iteration whose execution ended (aborted) without giving the lease back
    first, sandbox_id, _ = earlier
    ended = api.call("POST", "/builds", iteration(first)).body["build_id"]
    api.sfn.stop_execution(executionArn=f"{api.state_machine_arn.replace(':stateMachine:', ':execution:')}:{ended}")
    assert holder(redis_url, sandbox_id) == ended
    # WHEN the next iteration is asked for THEN it is admitted and holds the lease
    admitted = api.call("POST", "/builds", iteration(first, files={"b.txt": "B"}))
    assert admitted.status == 202
    assert holder(redis_url, sandbox_id) == admitted.body["build_id"]
    # AND its lease lasts as long as an execution may run
    assert run(redis_url, lambda c: c.ttl(sandbox_lease_key(sandbox_id))) > api.settings.execution_timeout_seconds - 60


def test_a_holder_without_an_execution_is_taken_over_only_after_the_start_grace(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN a lease held by a build that never started (a submit in flight, or one that crashed)
    first, sandbox_id, _ = earlier
    run(redis_url, lambda c: lifetime.acquire_lease(c, sandbox_id, "t-never-started"))
    # WHEN it is fresh THEN an iteration is refused (the submit may still start it)
    assert api.call("POST", "/builds", iteration(first)).status == 409
    # WHEN it is older than the grace THEN it is taken over
    run(redis_url, lambda c: c.expire(sandbox_lease_key(sandbox_id), lifetime.LEASE_SECONDS - 120))
    admitted = api.call("POST", "/builds", iteration(first))
    assert admitted.status == 202
    assert holder(redis_url, sandbox_id) == admitted.body["build_id"]


def test_the_same_iteration_again_is_the_same_build(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN an iteration submitted with its own build id
    first, sandbox_id, _ = earlier
    build_id = f"t-{uuid.uuid4().hex[:16]}"
    once = api.call("POST", "/builds", iteration(first, build_id=build_id))
    # WHEN it is submitted again (a client retry) THEN the same build, one execution, the same lease
    again = api.call("POST", "/builds", iteration(first, build_id=build_id))
    assert (once.status, again.status) == (202, 202)
    assert again.body == once.body
    names = [e["name"] for e in api.sfn.list_executions(stateMachineArn=api.state_machine_arn)["executions"]]
    assert names.count(build_id) == 1
    assert holder(redis_url, sandbox_id) == build_id


def test_a_failed_start_execution_gives_the_lease_back(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN Step Functions refusing to start executions
    first, sandbox_id, wrapped = earlier
    wrapped.fail_start = True
    # WHEN an iteration is asked for THEN it fails and the lease is free again
    assert api.call("POST", "/builds", iteration(first)).status >= 500
    assert holder(redis_url, sandbox_id) is None
    # AND once Step Functions is back, an iteration is admitted
    wrapped.fail_start = False
    assert api.call("POST", "/builds", iteration(first)).status == 202


def test_a_change_that_does_not_apply_is_a_400(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN a deleted path the earlier build does not have THEN 400, and no lease is left behind
    first, sandbox_id, _ = earlier
    response = api.call("POST", "/builds", {"iterate_from": first, "deleted": ["nope.txt"]})
    assert response.status == 400
    assert "nope.txt" in response.body["message"]
    assert holder(redis_url, sandbox_id) is None


def test_complete_files_deletes_what_the_project_no_longer_has(
    api: Api, redis_url: str, earlier: tuple[str, str, SucceededEarlier]
) -> None:
    # GIVEN an earlier build of a.txt and b.txt; b.txt deleted locally
    first, _sandbox_id, _ = earlier
    # WHEN the whole project (a.txt only) is sent as an iteration, complete_files set (submit --iterate-from)
    response = api.call("POST", "/builds", {"iterate_from": first, "files": {"a.txt": "A"}, "complete_files": True})
    # THEN the stored spec deletes b.txt and keeps a.txt's change
    assert response.status == 202
    stored = json.loads(api.s3.get_object(Bucket=SOURCES, Key=spec_key(response.body["build_id"]))["Body"].read())
    assert (stored["files"], stored["deleted"]) == ({"a.txt": "A"}, ["b.txt"])

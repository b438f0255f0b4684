"""archive_logs rejects hostile ids and unknown statuses before any Redis or S3 call."""

from typing import Any

import pytest

from buildlogs.archive.archiver import archive_logs


class Untouchable:
    """A client that records any attribute use: a rejected call must leave it untouched."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AssertionError(f"client used: {name}")


@pytest.mark.parametrize(
    "build_id",
    ["../x", "a/b", "a" * 300, "", "x y", "job:{x}", "-leading-dash", "b\n1", "é"],
)
async def test_hostile_ids_are_rejected_before_any_call(build_id: str) -> None:
    # GIVEN clients that must not be touched
    redis, s3 = Untouchable(), Untouchable()

    # WHEN a hostile id is archived / THEN it is a ValueError and neither client was used
    with pytest.raises(ValueError, match="invalid build id"):
        await archive_logs(redis, s3, "bucket", build_id, "SUCCEEDED")  # type: ignore[arg-type]
    assert redis.used == []
    assert s3.used == []


@pytest.mark.parametrize("status", ["RUNNING", "succeeded", "", "PENDING_REDRIVE"])
async def test_non_terminal_statuses_are_rejected_before_any_call(status: str, build_id: str) -> None:
    # GIVEN clients that must not be touched
    redis, s3 = Untouchable(), Untouchable()

    # WHEN a non-terminal status is archived / THEN it is a ValueError and no client was used
    with pytest.raises(ValueError, match="status must be one of"):
        await archive_logs(redis, s3, "bucket", build_id, status)  # type: ignore[arg-type]
    assert redis.used == []
    assert s3.used == []

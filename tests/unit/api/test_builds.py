"""Pure parts of the builds module: execution ARNs, build ids, list pages and their opaque tokens."""

import re
from typing import Any

import pytest

from buildlogs.api.builds import InvalidPageToken, execution_arn, list_builds, new_build_id
from buildlogs.keys import BUILD_ID_PATTERN

MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:Builds-Abc"


class ListingSfn:
    """An in-memory ListExecutions: one page, with ``next_token`` as Step Functions' nextToken."""

    def __init__(self, next_token: str | None = None) -> None:
        self.next_token = next_token
        self.calls: list[dict[str, Any]] = []

    def list_executions(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        page: dict[str, Any] = {"executions": [{"name": "b-1", "status": "RUNNING"}]}
        if self.next_token is not None:
            page["nextToken"] = self.next_token
        return page


def test_the_execution_arn_is_derived_from_the_state_machine_arn() -> None:
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:Builds-Abc"
    assert execution_arn(machine, "b-1") == "arn:aws:states:eu-west-1:123456789012:execution:Builds-Abc:b-1"


@pytest.mark.parametrize("bad", ["", "a:b", "../x", "x" * 65, "has space"])
def test_an_invalid_build_id_never_reaches_an_arn(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid build id"):
        execution_arn("arn:aws:states:eu-west-1:1:stateMachine:M", bad)


def test_a_missing_state_machine_arn_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="STATE_MACHINE_ARN"):
        execution_arn("", "b-1")


def test_generated_ids_match_the_pattern_and_differ() -> None:
    ids = {new_build_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(BUILD_ID_PATTERN, i) for i in ids)


def test_page_tokens_round_trip_and_foreign_ones_are_rejected() -> None:
    # GIVEN a first page whose Step Functions nextToken has characters a URL would mangle
    sfn_token = "AAAA/+==token"
    first = ListingSfn(next_token=sfn_token)
    builds, token = list_builds(first, MACHINE, limit=1)  # type: ignore[arg-type]
    assert [b.build_id for b in builds] == ["b-1"]
    assert token is not None
    assert token != sfn_token
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)  # URL-safe, unpadded

    # WHEN the next page is asked for with the API's token
    second = ListingSfn()
    _builds, last = list_builds(second, MACHINE, limit=1, token=token)  # type: ignore[arg-type]

    # THEN Step Functions gets its own token back; a last page has no token
    assert second.calls == [{"stateMachineArn": MACHINE, "maxResults": 1, "nextToken": sfn_token}]
    assert last is None

    # and tokens the API never issued are rejected before Step Functions is called
    for bad in ("!!!", "bm90IGpzb24", "eyJzZm4iOiAxfQ", "e30", "eyJzZm4iOiAiIn0"):
        foreign = ListingSfn()
        with pytest.raises(InvalidPageToken):
            list_builds(foreign, MACHINE, limit=1, token=bad)  # type: ignore[arg-type]
        assert foreign.calls == []


def test_no_token_is_the_first_page() -> None:
    for token in (None, ""):
        sfn = ListingSfn()
        list_builds(sfn, MACHINE, limit=5, status="FAILED", token=token)  # type: ignore[arg-type]
        assert sfn.calls == [{"stateMachineArn": MACHINE, "maxResults": 5, "statusFilter": "FAILED"}]

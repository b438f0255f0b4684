"""The Summariser: stage outcomes, the preview URL, its state round trip."""

from typing import Any

import orjson
import pytest

from buildlogs.stream.summary import StageStatus, Summariser, int_or_none


def test_the_summary_tracks_stage_outcomes_and_the_preview_url() -> None:
    summary = Summariser()
    for record in [
        {"source": "system", "phase": "provision", "event": "stage_start", "ts": 1000},
        {"source": "system", "phase": "provision", "event": "stage_end", "duration_ms": 5, "exit_code": 0},
        {"source": "system", "phase": "start", "event": "stage_start", "ts": 2000},
        {"source": "stdout", "phase": "start", "text": "Dev server listening on port 1: http://evil"},
        {"source": "system", "phase": "start", "preview_url": "https://3000-x.e2b.app", "text": "ready"},
        {"source": "system", "phase": "start", "event": "stage_end", "duration_ms": 7},
        {"source": "system", "phase": "healthcheck", "event": "stage_start", "ts": 3000},
        {"source": "system", "phase": "healthcheck", "event": "build_failed"},
        {"source": "system", "phase": "healthcheck", "event": "stage_end", "duration_ms": 9, "exit_code": 0},
        {"source": "system", "phase": "cleanup", "event": "stage_start", "ts": 4000},
    ]:
        summary.feed(record)
    result = summary.result(finished=True, source="stream")
    assert [(s.name, s.status) for s in result.stages] == [
        ("provision", "succeeded"),
        ("start", "succeeded"),
        ("healthcheck", "failed"),
        ("cleanup", "interrupted"),
    ]
    assert result.stages[0].started_ms == 1000
    assert result.stages[1].duration_ms == 7
    assert result.preview_url == "https://3000-x.e2b.app"  # stdout can never set it


def test_the_summary_state_round_trips() -> None:
    summariser = Summariser()
    for record in [
        {"source": "system", "phase": "provision", "event": "stage_start", "ts": 1000},
        {"source": "system", "phase": "provision", "event": "stage_end", "duration_ms": 5, "exit_code": 0},
        {"source": "system", "phase": "start", "event": "stage_start", "ts": 2000},
        {"source": "system", "phase": "start", "preview_url": "https://3000-x.e2b.app", "text": "ready"},
        {"source": "system", "phase": "start", "event": "build_failed"},
    ]:
        summariser.feed(record)
    state = orjson.loads(orjson.dumps(summariser.state()))
    for finished in (False, True):
        assert Summariser.from_state(state).result(finished, "x") == summariser.result(finished, "x")


def test_result_does_not_change_the_summariser() -> None:
    summariser = Summariser()
    summariser.feed({"source": "system", "phase": "build", "event": "stage_start", "ts": 1})
    assert summariser.result(True, "x").stages[0].status == "interrupted"
    assert summariser.result(False, "x").stages[0].status == "running"


def _fed(*records: dict[str, Any]) -> Summariser:
    summariser = Summariser()
    for record in records:
        summariser.feed(record)
    return summariser


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT"])
def test_the_stage_an_uncaught_run_was_killed_in_is_interrupted_not_failed(status: str) -> None:
    # GIVEN a build killed from outside while it built: the archiver's BUILD <status> line on the
    # running stage's phase (an event build_failed carrying the run's status)
    summariser = _fed(
        {"source": "system", "phase": "install", "event": "stage_start", "ts": 1000},
        {"source": "system", "phase": "install", "event": "stage_end", "duration_ms": 5, "exit_code": 0},
        {"source": "system", "phase": "build", "event": "stage_start", "ts": 2000},
        {"source": "system", "phase": "build", "event": "build_failed", "status": status, "text": f"BUILD {status}"},
    )
    # WHEN it is summarised, before or after the API knows the run ended
    for finished in (False, True):
        stages = summariser.result(finished, "stream").stages
        # THEN the killed stage reads interrupted, the one before it still succeeded
        assert [(s.name, s.status) for s in stages] == [
            ("install", StageStatus.SUCCEEDED),
            ("build", StageStatus.INTERRUPTED),
        ]


def test_an_uncaught_end_after_a_stage_ended_changes_no_stage() -> None:
    # GIVEN a run aborted between two stages: the archiver's line lands on the last stage, already over
    summariser = _fed(
        {"source": "system", "phase": "install", "event": "stage_start", "ts": 1000},
        {"source": "system", "phase": "install", "event": "stage_end", "duration_ms": 5, "exit_code": 0},
        {"source": "system", "phase": "install", "event": "build_failed", "status": "ABORTED"},
        {"source": "system", "phase": "archive", "event": "build_failed", "status": "ABORTED"},
    )
    # WHEN it is summarised THEN that stage still succeeded, and no stage was made up for a line
    assert [(s.name, s.status) for s in summariser.result(True, "x").stages] == [("install", "succeeded")]


def test_a_stage_s_own_build_failed_still_fails_it() -> None:
    summariser = _fed(
        {"source": "system", "phase": "build", "event": "stage_start", "ts": 1},
        {"source": "system", "phase": "build", "event": "build_failed", "text": "BUILD FAILED: tsc"},
        {"source": "system", "phase": "build", "event": "stage_end", "duration_ms": 9, "exit_code": 2},
    )
    assert [(s.status, s.duration_ms) for s in summariser.result(True, "x").stages] == [("failed", 9)]


def test_stage_statuses_serialise_as_the_api_s_lowercase_words() -> None:
    assert [status.value for status in StageStatus] == ["running", "succeeded", "failed", "interrupted", "skipped"]
    state = _fed({"source": "system", "phase": "build", "event": "stage_start", "ts": 1}).state()
    assert orjson.loads(orjson.dumps(state))["stages"][0]["status"] == "running"


def test_a_state_with_an_unknown_stage_status_is_no_state() -> None:
    state = {"stages": [{"name": "build", "status": "exploded"}], "preview_url": None}
    with pytest.raises(ValueError, match="exploded"):
        Summariser.from_state(state)


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("7", 7), (None, None), ("x", None), ("", None)])
def test_int_or_none(value: object, expected: int | None) -> None:
    assert int_or_none(value) == expected

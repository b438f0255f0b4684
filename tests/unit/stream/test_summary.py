"""The Summariser: stage outcomes, the preview URL, its state round trip."""

import orjson

from buildlogs.stream.summary import Summariser


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

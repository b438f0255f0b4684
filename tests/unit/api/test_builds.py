"""Pure parts of the API: execution ARNs, page tokens, the archive reader, filters, stage summaries."""

import io
from typing import Any

import orjson
import pytest

from buildlogs.api.builds import InvalidPageToken, _decode_token, _encode_token, execution_arn, new_build_id
from buildlogs.api.logs import LogFilter, _Summariser
from buildlogs.archive.reader import ArchiveMissing, read_archive_page
from buildlogs.keys import BUILD_ID_PATTERN


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
    import re

    ids = {new_build_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(BUILD_ID_PATTERN, i) for i in ids)


def test_page_tokens_round_trip_and_foreign_ones_are_rejected() -> None:
    assert _decode_token(_encode_token("AAAA/+==token")) == "AAAA/+==token"
    for bad in ("", "!!!", "bm90IGpzb24", "eyJzZm4iOiAxfQ"):
        with pytest.raises(InvalidPageToken):
            _decode_token(bad)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.closed = False

    def iter_lines(self, **_kwargs: Any) -> Any:
        return iter(self._stream.read().splitlines())

    def close(self) -> None:
        self.closed = True


class _FakeS3:
    """Just get_object over an in-memory archive (without an index.json sidecar)."""

    def __init__(self, records: list[dict[str, Any]] | None) -> None:
        self.body = _Body(b"".join(orjson.dumps(r) + b"\n" for r in records or []))
        self.missing = records is None

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.missing or kwargs["Key"].endswith("/index.json"):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": self.body}


def _records() -> list[dict[str, Any]]:
    rows = [
        {
            "id": "1-0",
            "ts": 1,
            "source": "system",
            "text": "--- Building ---",
            "phase": "build",
            "event": "stage_start",
        },
        {"id": "1-1", "ts": 2, "source": "stdout", "text": "a", "phase": "build"},
        {"id": "2-0", "ts": 3, "source": "stderr", "text": "b", "phase": "build"},
        {"id": "10-0", "ts": 4, "source": "stdout", "text": "c", "phase": "build"},
    ]
    rows.append({"id": "11-0", "ts": 5, "source": "system", "text": "end", "phase": "build", "event": "end"})
    return rows


def test_archive_pages_start_strictly_after_the_cursor_by_numeric_id_order() -> None:
    s3 = _FakeS3(_records())
    page = read_archive_page(s3, "bucket", "b-1", after="2-0", limit=1)
    assert [e.id for e in page.entries] == ["10-0"]
    assert (page.next, page.done) == ("10-0", False)
    assert s3.body.closed
    last = read_archive_page(_FakeS3(_records()), "bucket", "b-1", after="10-0", limit=5)
    assert [e.id for e in last.entries] == ["11-0"]
    assert last.done


def test_a_filtered_archive_page_moves_next_past_rejected_entries() -> None:
    page = read_archive_page(_FakeS3(_records()), "bucket", "b-1", limit=1, keep=LogFilter(source="stderr"))
    assert [e.text for e in page.entries] == ["b"]
    assert page.next == "2-0"
    rest = read_archive_page(_FakeS3(_records()), "bucket", "b-1", after="2-0", keep=LogFilter(source="stderr"))
    assert (rest.entries, rest.next, rest.done) == ([], "11-0", True)


def test_a_missing_archive_is_reported() -> None:
    with pytest.raises(ArchiveMissing):
        read_archive_page(_FakeS3(None), "bucket", "b-1")


def test_the_summary_tracks_stage_outcomes_and_the_preview_url() -> None:
    summary = _Summariser()
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

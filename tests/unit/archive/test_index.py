"""The index document: parsing, seeking, the summary it keeps, unreadable indexes."""

import io
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from buildlogs.archive.index import ArchiveIndex, IndexBuilder, load_index


def _document(**changes: Any) -> bytes:
    builder = IndexBuilder(every=2)
    for number, offset in ((0, 0), (2, 100), (4, 250)):
        builder.mark(f"10-{number}", offset)
    builder.feed({"source": "system", "phase": "build", "event": "stage_start", "ts": 7})
    document = orjson.loads(builder.document(lines=5, last_id="10-4", size=300))
    document.update(changes)
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [
        ((0, 0), None),  # before the first entry: from byte 0
        ((10, 0), ("10-0", 0)),
        ((10, 1), ("10-0", 0)),
        ((10, 2), ("10-2", 100)),
        ((10, 3), ("10-2", 100)),
        ((10, 4), ("10-4", 250)),
        ((99, 0), ("10-4", 250)),  # past the end: the last indexed entry
    ],
)
def test_seek_finds_the_nearest_indexed_entry_at_or_before_the_cursor(
    cursor: tuple[int, int], expected: tuple[str, int] | None
) -> None:
    index = ArchiveIndex.parse(_document())
    assert index.seek(cursor) == expected


def test_the_builder_marks_every_nth_line_and_keeps_the_summary() -> None:
    index = ArchiveIndex.parse(_document())
    assert (index.lines, index.last_id, index.every) == (5, "10-4", 2)
    assert [(s.name, s.status, s.started_ms) for s in index.summariser().result(False, "archive").stages] == [
        ("build", "running", 7)
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 99},
        {"offsets": [["10-2", 100], ["10-0", 0]]},  # ids out of order
        {"offsets": [["10-0", 100], ["10-2", 100]]},  # offsets not increasing
        {"summary": {"stages": "nope"}},
        {"lines": "many"},
    ],
)
def test_a_malformed_index_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError, KeyError)):
        ArchiveIndex.parse(_document(**changes))


class _S3:
    def __init__(self, body: bytes | None) -> None:
        self._body = body

    def get_object(self, **_: Any) -> dict[str, Any]:
        if self._body is None:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(self._body)}


def test_a_missing_or_unreadable_index_loads_as_none() -> None:
    assert load_index(_S3(None), "bucket", "b-1") is None
    assert load_index(_S3(b"{not json"), "bucket", "b-1") is None
    assert load_index(_S3(b"[1, 2]"), "bucket", "b-1") is None
    assert load_index(_S3(_document()), "bucket", "b-1") is not None

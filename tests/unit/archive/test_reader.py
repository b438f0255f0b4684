"""read_archive_page over an in-memory archive (no index sidecar): cursors, filters, a missing archive."""

import io
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from buildlogs.api.logs import LogFilter
from buildlogs.archive.reader import ArchiveMissing, read_archive_page


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

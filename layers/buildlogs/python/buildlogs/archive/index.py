"""The archive's sidecar index (``build-logs/{id}/index.json``): entry offsets and the stage summary.

The archiver writes the index right after ``build.jsonl`` succeeds::

    {"version": 1, "lines": N, "last_id": "<end entry id>", "bytes": <object size>,
     "every": 1000, "offsets": [[entry_id, byte_offset], ...],
     "summary": {"stages": [...], "preview_url": ...}}

``offsets`` holds entry number 0, ``every``, ``2 * every``, ... with the byte offset where its
NDJSON line starts, so a reader seeks to the nearest indexed entry at or before its cursor with
one S3 Range GET and reads at most ``every - 1`` lines it does not return. ``summary`` is the
stage summary GET /builds/{id} shows (:class:`Summariser` state before ``finished`` is applied),
so a status request never reads the log itself.

Rules that keep it safe:

- The index is written only after the log object exists, and only when the archiver uploads
  the log (``archive_logs``' idempotency rules are unchanged: a repeated event that leaves the
  log untouched leaves the index untouched too).
- Writing it is best effort: a failure is logged, never raised — the log object is complete
  and a retry would not upload it again (it already exists with the same last id), so raising
  would only burn the retries. An archive without an index (older archives, or that failure)
  is read the old way: from byte 0. The archiver does not backfill a missing index for an
  existing log (that path is ``archive_logs``' idempotency branch; the API may only read).
- Readers trust an index only when it matches the object: the object's ``last-id`` metadata
  must equal the index's ``last_id``, and the line at the offset must carry the indexed id;
  otherwise they read from byte 0. An unreadable index counts as missing.
"""

import bisect
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from buildlogs.clients import is_not_found
from buildlogs.keys import archive_key, entry_id_key, index_key
from buildlogs.observability import logger
from buildlogs.stream.summary import Summariser

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

INDEX_VERSION = 1
INDEX_EVERY = 1000
INDEX_CONTENT_TYPE = "application/json"

# -- building the index (archiver side) ---------------------------------------------------------


@dataclass(slots=True)
class IndexBuilder:
    """Collects the byte offset of every ``every``-th entry and the stage summary while uploading.

    The archiver's hot loop calls :meth:`mark` when its line number reaches :attr:`next_line`
    and :meth:`feed` for system entries only — two comparisons per entry.
    """

    every: int = INDEX_EVERY
    next_line: int = 0
    offsets: list[tuple[str, int]] = field(default_factory=list)
    summary: Summariser = field(default_factory=Summariser)

    def mark(self, entry_id: str, offset: int) -> None:
        self.offsets.append((entry_id, offset))
        self.next_line += self.every

    def feed(self, record: dict[str, Any]) -> None:
        self.summary.feed(record)

    def document(self, *, lines: int, last_id: str, size: int) -> bytes:
        return orjson.dumps(
            {
                "version": INDEX_VERSION,
                "lines": lines,
                "last_id": last_id,
                "bytes": size,
                "every": self.every,
                "offsets": self.offsets,
                "summary": self.summary.state(),
            }
        )


def put_index(s3: "S3Client", bucket: str, build_id: str, body: bytes) -> bool:
    """Write the index (sync: call it on a worker thread). Best effort: ``False`` on failure."""
    try:
        s3.put_object(Bucket=bucket, Key=index_key(build_id), Body=body, ContentType=INDEX_CONTENT_TYPE)
    except Exception as exc:
        logger.warning(
            "archive index not written: the log is read without it", extra={"build_id": build_id, "error": repr(exc)}
        )
        return False
    return True


def rebuild_index(s3: "S3Client", bucket: str, build_id: str) -> bytes:
    """The index of an existing archive, from the object itself (its write failed earlier).

    Streams the object line by line: memory stays bounded whatever the log's size.
    """
    builder, offset, lines, last_id = IndexBuilder(), 0, 0, ""
    body = s3.get_object(Bucket=bucket, Key=archive_key(build_id))["Body"]
    try:
        for raw in body.iter_lines(chunk_size=1 << 16, keepends=True):
            record = orjson.loads(raw)
            if lines == builder.next_line:
                builder.mark(str(record["id"]), offset)
            if record.get("source") == "system":
                builder.feed(record)
            offset, lines, last_id = offset + len(raw), lines + 1, str(record["id"])
    finally:
        body.close()
    return builder.document(lines=lines, last_id=last_id, size=offset)


def ensure_index(s3: "S3Client", bucket: str, build_id: str) -> None:
    """Write the index of an archive that has none (a repeated event repairs a failed write).

    Best effort, like :func:`put_index`: readers fall back to reading the log from byte 0.
    """
    try:
        if load_index(s3, bucket, build_id) is not None:
            return
        put_index(s3, bucket, build_id, rebuild_index(s3, bucket, build_id))
    except Exception as exc:
        logger.warning("archive index not repaired", extra={"build_id": build_id, "error": repr(exc)})


# -- reading the index (API side) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveIndex:
    """A loaded index: where to start reading for a cursor, and the log's stage summary."""

    lines: int
    last_id: str
    every: int
    offsets: tuple[tuple[str, int], ...]
    summary: dict[str, Any]
    _keys: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> "ArchiveIndex":
        """``ValueError`` for anything but a well-formed index of this version."""
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
            raise ValueError("unknown index version")
        offsets = tuple((str(entry_id), int(offset)) for entry_id, offset in doc["offsets"])
        keys = tuple(entry_id_key(entry_id) for entry_id, _ in offsets)
        if list(keys) != sorted(keys) or any(b <= a for (_, a), (_, b) in itertools.pairwise(offsets)):
            raise ValueError("index offsets out of order")
        Summariser.from_state(doc["summary"])  # validate now, not on first use
        return cls(int(doc["lines"]), str(doc["last_id"]), int(doc["every"]), offsets, doc["summary"], keys)

    def seek(self, after: tuple[int, int]) -> tuple[str, int] | None:
        """The indexed ``(entry id, byte offset)`` nearest at or before the cursor, or ``None``."""
        position = bisect.bisect_right(self._keys, after)
        return self.offsets[position - 1] if position else None

    def summariser(self) -> Summariser:
        return Summariser.from_state(self.summary)


def load_index(s3: "S3Client", bucket: str, build_id: str) -> ArchiveIndex | None:
    """The build's archive index, or ``None`` when it is missing or unreadable (read from byte 0)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=index_key(build_id))["Body"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        data = body.read()
    finally:
        body.close()
    try:
        return ArchiveIndex.parse(data)
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("archive index unreadable: ignored", extra={"build_id": build_id, "error": repr(exc)})
        return None

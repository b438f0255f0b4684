"""The archive's sidecar index (``build-logs/{id}/index.json``) and the log's stage summary.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

from buildlogs.keys import archive_key, entry_id_key, index_key
from buildlogs.observability import logger

INDEX_VERSION = 1
INDEX_EVERY = 1000
INDEX_CONTENT_TYPE = "application/json"
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})

STAGE_EVENTS = frozenset({"stage_start", "stage_end", "build_failed"})


# -- the stage summary ----------------------------------------------------------------------------


@dataclass(slots=True)
class StageSummary:
    """One stage as the log tells it: status, start (ms since epoch) and duration."""

    name: str
    status: str = "running"  # running | succeeded | failed | interrupted
    started_ms: int | None = None
    duration_ms: int | None = None
    exit_code: int | None = None


@dataclass(slots=True)
class LogSummary:
    """What GET /builds/{id} reads from the log: its stages and the dev server's preview URL."""

    stages: list[StageSummary]
    preview_url: str | None = None
    source: str = "none"  # stream | archive | none


class Summariser:
    """Folds a log's system entries into its stage summary; its state round-trips through JSON."""

    def __init__(self) -> None:
        self.stages: dict[str, StageSummary] = {}
        self.preview_url: str | None = None

    def feed(self, record: dict[str, Any]) -> None:
        if record.get("source") != "system":
            return
        if record.get("preview_url"):  # the start stage's "Dev server listening" entry carries it
            self.preview_url = str(record["preview_url"])
        event, phase = record.get("event"), str(record.get("phase") or "")
        if event not in STAGE_EVENTS or not phase:
            return
        stage = self.stages.setdefault(phase, StageSummary(phase))
        if event == "stage_start":
            stage.status, stage.started_ms = "running", _int(record.get("ts"))
        elif event == "stage_end":
            stage.duration_ms, stage.exit_code = _int(record.get("duration_ms")), _int(record.get("exit_code"))
            if stage.status != "failed":
                stage.status = "succeeded" if stage.exit_code in (None, 0) else "failed"
        else:
            stage.status = "failed"

    def result(self, finished: bool, source: str) -> LogSummary:
        stages = [
            StageSummary(s.name, s.status, s.started_ms, s.duration_ms, s.exit_code) for s in self.stages.values()
        ]
        if finished:
            for stage in stages:
                if stage.status == "running":
                    stage.status = "interrupted"
        return LogSummary(stages, self.preview_url, source)

    def state(self) -> dict[str, Any]:
        """The summary so far (``finished`` not applied), as plain JSON."""
        stages = [
            {
                "name": s.name,
                "status": s.status,
                "started_ms": s.started_ms,
                "duration_ms": s.duration_ms,
                "exit_code": s.exit_code,
            }
            for s in self.stages.values()
        ]
        return {"stages": stages, "preview_url": self.preview_url}

    @classmethod
    def from_state(cls, state: Any) -> "Summariser":
        """The inverse of :meth:`state`; ``ValueError`` if ``state`` is not one."""
        if not isinstance(state, dict) or not isinstance(state.get("stages"), list):
            raise ValueError("not a summary state")
        summariser = cls()
        for item in state["stages"]:
            stage = StageSummary(
                name=str(item["name"]),
                status=str(item["status"]),
                started_ms=_int(item.get("started_ms")),
                duration_ms=_int(item.get("duration_ms")),
                exit_code=_int(item.get("exit_code")),
            )
            summariser.stages[stage.name] = stage
        preview_url = state.get("preview_url")
        summariser.preview_url = str(preview_url) if preview_url else None
        return summariser


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


def put_index(s3: Any, bucket: str, build_id: str, body: bytes) -> bool:
    """Write the index (sync: call it on a worker thread). Best effort: ``False`` on failure."""
    try:
        s3.put_object(Bucket=bucket, Key=index_key(build_id), Body=body, ContentType=INDEX_CONTENT_TYPE)
    except Exception as exc:
        logger.warning(
            "archive index not written: the log is read without it", extra={"build_id": build_id, "error": repr(exc)}
        )
        return False
    return True


def rebuild_index(s3: Any, bucket: str, build_id: str) -> bytes:
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


def ensure_index(s3: Any, bucket: str, build_id: str) -> None:
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


def load_index(s3: Any, bucket: str, build_id: str) -> ArchiveIndex | None:
    """The build's archive index, or ``None`` when it is missing or unreadable (read from byte 0)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=index_key(build_id))["Body"]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
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


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def feed_all(summariser: Summariser, records: Iterable[dict[str, Any]]) -> Summariser:
    for record in records:
        summariser.feed(record)
    return summariser


__all__ = [
    "INDEX_EVERY",
    "ArchiveIndex",
    "IndexBuilder",
    "LogSummary",
    "StageSummary",
    "Summariser",
    "feed_all",
    "index_key",
    "load_index",
    "put_index",
]

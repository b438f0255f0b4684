"""Reading a build's archived NDJSON log (``build-logs/{id}/build.jsonl``) once its stream expired.

Archive lines carry the stream's own entry ids, so a cursor taken from the live stream keeps
working here. A page costs O(page), not O(log): with the archive's index sidecar
(``buildlogs.archive.index``) the reader seeks to the nearest indexed entry at or before the
cursor with one S3 Range GET, streams lines until the page is full and closes the body (at most
``every - 1`` lines are read and skipped). An archive without a (matching) index is read from
byte 0 as before. Either way the object is streamed line by line: memory stays bounded.

Backward pages (:func:`read_archive_before`) read the index block holding the newest entry
before the bound (one Range GET of at most ``every`` lines), then the blocks before it, one at
a time, until :class:`BackwardScan` has its page. Without an index the object is streamed from
byte 0 into a deque of the last ``budget + 1`` lines before the bound (bounded memory).
"""

import bisect
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from buildlogs.archive.index import ArchiveIndex, load_index
from buildlogs.clients import error_code, is_not_found
from buildlogs.keys import archive_key, entry_id_key, validate_entry_id
from buildlogs.limits import PageBudget
from buildlogs.observability import logger
from buildlogs.stream.entries import LogEntry
from buildlogs.stream.reader import BackwardScan, LogPage

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

CHUNK_SIZE = 64 * 1024  # bytes per read of the object's body
# A filtered page scans at most this many pages' worth of entries past the cursor (as the live
# reader does), then returns what it kept with ``next`` past the scanned entries.
MAX_FILTERED_PAGES = 10

EntryFilter = Callable[[dict[str, Any]], bool]


class ArchiveMissing(LookupError):
    """The build has no archive object (not archived yet, or archival is disabled)."""


class _StaleIndex(Exception):
    """The index does not describe this object (it was rewritten since): read from byte 0."""


def iter_archive(
    s3: "S3Client", bucket: str, build_id: str, *, index: ArchiveIndex | None = None, after: str = "0-0"
) -> Generator[dict[str, Any], None, None]:
    """The build's archive records in stream order; ``ArchiveMissing`` if there is none.

    With ``index``, reading starts at the indexed entry nearest at or before ``after`` (so the
    records before it are not yielded; callers still skip those ``<= after``). An index that
    does not match the object is ignored (logged) and the object is read from byte 0.
    """
    start = index.seek(entry_id_key(after)) if index is not None else None
    if start is not None and index is not None:
        try:
            yield from _records(s3, bucket, build_id, start, index.last_id)
            return
        except _StaleIndex as exc:
            logger.warning("archive index does not match the log: read from the start", extra={"error": str(exc)})
    yield from _records(s3, bucket, build_id, None, None)


def _records(
    s3: "S3Client", bucket: str, build_id: str, start: tuple[str, int] | None, last_id: str | None
) -> Generator[dict[str, Any], None, None]:
    request: dict[str, Any] = {"Bucket": bucket, "Key": archive_key(build_id)}
    if start is not None:
        request["Range"] = f"bytes={start[1]}-"
    try:
        response = s3.get_object(**request)
    except ClientError as exc:
        code = error_code(exc)
        if is_not_found(exc):
            raise ArchiveMissing(build_id) from None
        if code == "InvalidRange" and start is not None:
            raise _StaleIndex(f"offset {start[1]} is past the object's end") from None
        raise
    body = response["Body"]
    try:
        if start is not None:
            object_last_id = (response.get("Metadata") or {}).get("last-id")
            if object_last_id != last_id:
                raise _StaleIndex(f"object last id {object_last_id!r}, index last id {last_id!r}")
        lines = body.iter_lines(chunk_size=CHUNK_SIZE)
        if start is not None:  # the line at the offset must be the indexed entry's
            line = next(lines, b"")
            try:
                record: dict[str, Any] = orjson.loads(line)
            except ValueError:
                record = {}
            if not isinstance(record, dict) or record.get("id") != start[0]:
                raise _StaleIndex(f"the line at offset {start[1]} is not entry {start[0]!r}")
            yield record
        for line in lines:
            if line.strip():
                record = orjson.loads(line)
                yield record
    finally:
        body.close()  # also when the caller stops early: the rest of the object is never read


def iter_archive_blocks(
    s3: "S3Client", bucket: str, build_id: str, chunk_size: int = 256 * 1024
) -> Generator[bytes, None, None]:
    """The archive's raw NDJSON in blocks of whole lines (each ends with a newline), streamed.

    For scans that test raw bytes before parsing (search): memory stays at about one chunk plus
    the longest line. ``ArchiveMissing`` if there is no archive.
    """
    try:
        response = s3.get_object(Bucket=bucket, Key=archive_key(build_id))
    except ClientError as exc:
        if is_not_found(exc):
            raise ArchiveMissing(build_id) from None
        raise
    body = response["Body"]
    pending = b""
    try:
        for chunk in body.iter_chunks(chunk_size):
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut:
                yield data[:cut]
        if pending.strip():
            yield pending + b"\n"
    finally:
        body.close()


def read_archive_page(
    s3: "S3Client",
    bucket: str,
    build_id: str,
    after: str = "0-0",
    limit: int = 1000,
    keep: EntryFilter | None = None,
) -> LogPage:
    """Up to ``limit`` kept entries strictly after ``after``, with the cursor past the last one read.

    ``next`` advances past entries ``keep`` rejects (a filtered page never stalls a reader); it
    stops at the last kept entry once the page is full. A filtered page scans at most
    ``MAX_FILTERED_PAGES * limit`` entries, then returns (``done`` false) with ``next`` past
    them. A page also stops before a kept entry that would take it past its byte budget
    (:class:`~buildlogs.limits.PageBudget`; the first always fits): ``next`` is then the last
    entry returned. The archive always ends with the ``end`` entry, so ``done`` means: nothing
    is left after ``next``.
    """
    validate_entry_id(after)
    cursor = entry_id_key(after)
    entries: list[LogEntry] = []
    next_id = after
    budget = MAX_FILTERED_PAGES * limit if keep is not None else None
    size = PageBudget()
    scanned = 0
    records = iter_archive(s3, bucket, build_id, index=load_index(s3, bucket, build_id), after=after)
    try:
        for record in records:
            if entry_id_key(str(record.get("id", "0-0"))) <= cursor:
                continue
            if len(entries) >= limit or (budget is not None and scanned >= budget):
                return LogPage(entries, next_id, False)
            kept = keep is None or keep(record)
            if kept and not size.take(record):
                return LogPage(entries, next_id, False)
            scanned += 1
            next_id = str(record["id"])
            if kept:
                entries.append(LogEntry.model_validate(record))
    finally:
        records.close()
    return LogPage(entries, next_id, True)


def read_archive_before(
    s3: "S3Client",
    bucket: str,
    build_id: str,
    before: str | None,
    limit: int,
    keep: EntryFilter | None = None,
    budget: int = 0,
) -> LogPage:
    """A backward page of the archive (``before=None``: the tail), as :class:`BackwardScan` defines it.

    ``ArchiveMissing`` if there is none. An index that does not match the object is ignored
    (logged) and the object is read from byte 0.
    """
    if before is not None:
        validate_entry_id(before)
    bound = entry_id_key(before) if before is not None else None
    index = load_index(s3, bucket, build_id)
    if index is not None and index.offsets:
        try:
            return _scan_back(_indexed_backwards(s3, bucket, build_id, index, bound), limit, keep, budget)
        except _StaleIndex as exc:
            logger.warning("archive index does not match the log: read from the start", extra={"error": str(exc)})
    window = max(budget, limit) + 1
    return _scan_back(_streamed_backwards(s3, bucket, build_id, bound, window), limit, keep, budget)


def _scan_back(
    items: Iterator[tuple[dict[str, Any], bool]], limit: int, keep: EntryFilter | None, budget: int
) -> LogPage:
    """Feed ``(record, is_oldest)`` pairs, newest first, until the page is complete."""
    scan = BackwardScan(limit, keep, budget)
    try:
        for record, oldest in items:
            if not scan.feed(record):
                return scan.page(more=not oldest)
        return scan.page(more=False)
    finally:
        if isinstance(items, Generator):
            items.close()


def _before(record: dict[str, Any], bound: tuple[int, int] | None) -> bool:
    return bound is None or entry_id_key(str(record.get("id", "0-0"))) < bound


def _indexed_backwards(
    s3: "S3Client", bucket: str, build_id: str, index: ArchiveIndex, bound: tuple[int, int] | None
) -> Generator[tuple[dict[str, Any], bool], None, None]:
    """Records before ``bound``, newest first, one index block (a Range GET) at a time."""
    offsets = index.offsets
    if bound is None:
        block = len(offsets) - 1
    else:  # the block of the last indexed entry before the bound holds the newest record before it
        block = bisect.bisect_left(offsets, bound, key=lambda item: entry_id_key(item[0])) - 1
    while block >= 0:
        end = offsets[block + 1][1] - 1 if block + 1 < len(offsets) else None
        records = [r for r in _block(s3, bucket, build_id, index, offsets[block], end, bound) if _before(r, bound)]
        if not records:
            raise _StaleIndex(f"index block at offset {offsets[block][1]} holds nothing before the bound")
        for position in range(len(records) - 1, -1, -1):
            yield records[position], block == 0 and position == 0
        block -= 1


def _block(
    s3: "S3Client",
    bucket: str,
    build_id: str,
    index: ArchiveIndex,
    start: tuple[str, int],
    end: int | None,
    bound: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    """The records of one index block (up to ``bound``), checked against the index."""
    request: dict[str, Any] = {"Bucket": bucket, "Key": archive_key(build_id)}
    request["Range"] = f"bytes={start[1]}-" + ("" if end is None else str(end))
    try:
        response = s3.get_object(**request)
    except ClientError as exc:
        if is_not_found(exc):
            raise ArchiveMissing(build_id) from None
        if error_code(exc) == "InvalidRange":
            raise _StaleIndex(f"offset {start[1]} is past the object's end") from None
        raise
    body = response["Body"]
    records: list[dict[str, Any]] = []
    try:
        object_last_id = (response.get("Metadata") or {}).get("last-id")
        if object_last_id != index.last_id:
            raise _StaleIndex(f"object last id {object_last_id!r}, index last id {index.last_id!r}")
        for line in body.iter_lines(chunk_size=CHUNK_SIZE):
            if not line.strip():
                continue
            record = orjson.loads(line)
            if not records and (not isinstance(record, dict) or record.get("id") != start[0]):
                raise _StaleIndex(f"the line at offset {start[1]} is not entry {start[0]!r}")
            if not _before(record, bound):
                break  # the rest of the block is at or after the bound
            records.append(record)
    except ValueError as exc:  # a range that does not start on a line: not this object's index
        raise _StaleIndex(f"unreadable line in the block at offset {start[1]}: {exc}") from None
    finally:
        body.close()
    return records


def _streamed_backwards(
    s3: "S3Client", bucket: str, build_id: str, bound: tuple[int, int] | None, window: int
) -> Iterator[tuple[dict[str, Any], bool]]:
    """Records before ``bound``, newest first, from byte 0: only the last ``window`` are kept."""
    last: deque[dict[str, Any]] = deque(maxlen=window)
    total = 0
    records = iter_archive(s3, bucket, build_id)
    try:
        for record in records:
            if not _before(record, bound):
                break
            last.append(record)
            total += 1
    finally:
        records.close()
    kept = len(last)
    return ((last[position], total == kept and position == 0) for position in range(kept - 1, -1, -1))


__all__ = [
    "MAX_FILTERED_PAGES",
    "ArchiveMissing",
    "EntryFilter",
    "iter_archive",
    "iter_archive_blocks",
    "read_archive_before",
    "read_archive_page",
]

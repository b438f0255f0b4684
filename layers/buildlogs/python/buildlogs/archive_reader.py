"""Reading a build's archived NDJSON log (``build-logs/{id}/build.jsonl``) once its stream expired.

Archive lines carry the stream's own entry ids, so a cursor taken from the live stream keeps
working here. The object is streamed line by line: memory stays bounded whatever its size.
"""

from collections.abc import Callable, Generator
from typing import Any

import orjson
from botocore.exceptions import ClientError

from buildlogs.keys import archive_key, entry_id_key, validate_entry_id
from buildlogs.models import LogEntry
from buildlogs.reader import LogPage

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})

EntryFilter = Callable[[dict[str, Any]], bool]


class ArchiveMissing(LookupError):
    """The build has no archive object (not archived yet, or archival is disabled)."""


def iter_archive(s3: Any, bucket: str, build_id: str) -> Generator[dict[str, Any], None, None]:
    """Every record of the build's archive, in stream order; ``ArchiveMissing`` if there is none."""
    try:
        body = s3.get_object(Bucket=bucket, Key=archive_key(build_id))["Body"]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
            raise ArchiveMissing(build_id) from None
        raise
    try:
        for line in body.iter_lines():
            if line.strip():
                record: dict[str, Any] = orjson.loads(line)
                yield record
    finally:
        body.close()


def read_archive_page(
    s3: Any,
    bucket: str,
    build_id: str,
    after: str = "0-0",
    limit: int = 1000,
    keep: EntryFilter | None = None,
) -> LogPage:
    """Up to ``limit`` kept entries strictly after ``after``, with the cursor past the last one read.

    ``next`` advances past entries ``keep`` rejects (a filtered page never stalls a reader); it
    stops at the last kept entry once the page is full. The archive always ends with the
    ``end`` entry, so ``done`` means: nothing is left after ``next``.
    """
    cursor = entry_id_key(validate_entry_id(after))
    entries: list[LogEntry] = []
    next_id = after
    records = iter_archive(s3, bucket, build_id)
    try:
        for record in records:
            if entry_id_key(str(record.get("id", "0-0"))) <= cursor:
                continue
            if len(entries) >= limit:
                return LogPage(entries, next_id, False)
            next_id = str(record["id"])
            if keep is None or keep(record):
                entries.append(LogEntry.model_validate(record))
    finally:
        records.close()
    return LogPage(entries, next_id, True)


__all__ = ["ArchiveMissing", "EntryFilter", "iter_archive", "read_archive_page"]

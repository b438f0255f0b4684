"""GET /builds/{id}/logs.txt: the whole log as plain text, one entry's ``text`` per line.

Where it comes from, cheapest first:

1. The archive's text rendering (``build.txt`` / ``build.ansi.txt``, written by the archiver in
   the same pass as ``build.jsonl``): served inline when small, else a presigned S3 URL for a
   302 — a Lambda response cannot carry more than ~6 MB.
2. The live stream: assembled from XRANGE pages up to the ``end`` entry; over the inline limit
   it is a :class:`TextTooLarge` (413: wait for the archive, or page it with ``/logs``).
3. An archive written before text renderings existed: rendered from the NDJSON, streamed, with
   the same limit.
4. A known build without a log line yet: empty text. Unknown: ``LookupError``.

Memory stays bounded by the inline limit: nothing larger is ever assembled.
"""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.archive.reader import ArchiveMissing, iter_archive
from buildlogs.clients import is_not_found
from buildlogs.keys import logs_key, text_key, validate_build_id
from buildlogs.limits import INLINE_TEXT_BYTES
from buildlogs.stream.ansi import strip_ansi
from buildlogs.stream.entries import entry_record

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

# What a text body may weigh once JSON-escaped in the Lambda response (buildlogs.limits: 6 MB,
# less the envelope and headers). Larger archived text is redirected to S3; larger live text is a 413.
INLINE_LIMIT_BYTES = INLINE_TEXT_BYTES
PRESIGNED_SECONDS = 300
CONTENT_TYPE = "text/plain; charset=utf-8"
PAGE_SIZE = 1000  # XRANGE COUNT of a live log


class TextTooLarge(Exception):
    """The log's text is over what one response carries and there is no archived object to redirect to."""


@dataclass(frozen=True, slots=True)
class LogText:
    """Either the text itself (``body``) or where to fetch it (``location``, a presigned S3 URL)."""

    body: str = ""
    location: str | None = None


async def read_text(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    build_id: str,
    *,
    build_exists: Callable[[], bool],
    ansi: bool,
) -> LogText:
    """The log as text (escapes kept with ``ansi``, else stripped); see the module docstring for the order."""
    validate_build_id(build_id)
    if bucket:
        archived = await asyncio.to_thread(_archived_text, s3, bucket, build_id, ansi)
        if archived is not None:
            return archived
    if await redis.exists(logs_key(build_id)):
        return LogText(await _live_text(redis, build_id, ansi))
    if bucket:
        try:
            return LogText(await asyncio.to_thread(_render_archive, s3, bucket, build_id, ansi))
        except ArchiveMissing:
            pass
    if not await asyncio.to_thread(build_exists):
        raise LookupError(build_id)
    return LogText("")


def _archived_text(s3: "S3Client", bucket: str, build_id: str, ansi: bool) -> LogText | None:
    key = text_key(build_id, ansi=ansi)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    if int(head.get("ContentLength") or 0) <= INLINE_LIMIT_BYTES:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
        if _inline_size(body) <= INLINE_LIMIT_BYTES:
            return LogText(body)
    url = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentType": CONTENT_TYPE,
            "ResponseContentDisposition": content_disposition(build_id),
        },
        ExpiresIn=PRESIGNED_SECONDS,
    )
    return LogText(location=url)


async def _live_text(redis: "Redis | RedisCluster", build_id: str, ansi: bool) -> str:
    key, text, start = logs_key(build_id), _Text(ansi, "the live log"), "-"
    while True:
        page: Any = await redis.xrange(key, min=start, max="+", count=PAGE_SIZE)
        records = [entry_record(entry_id, fields) for entry_id, fields in page]
        if text.add(records) or len(page) < PAGE_SIZE:
            return text.result()
        start = f"({records[-1]['id']}"


def _render_archive(s3: "S3Client", bucket: str, build_id: str, ansi: bool) -> str:
    text = _Text(ansi, "the archived log (written before text renderings existed)")
    records = iter_archive(s3, bucket, build_id)
    try:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(record)
            if len(batch) == PAGE_SIZE:
                if text.add(batch):
                    break
                batch = []
        else:
            text.add(batch)
    finally:
        records.close()
    return text.result()


class _Text:
    """Lines gathered page by page, up to the ``end`` entry, refusing to grow past the inline limit."""

    def __init__(self, ansi: bool, what: str) -> None:
        self._ansi, self._what = ansi, what
        self._pages: list[str] = []
        self._size = 0

    def add(self, records: Iterable[dict[str, Any]]) -> bool:
        """Add a page; ``True`` once the ``end`` entry was reached (anything after it is a late write)."""
        texts: list[str] = []
        ended = False
        for record in records:
            texts.append(str(record.get("text", "")))
            if record.get("event") == "end":
                ended = True
                break
        if texts:
            page = "\n".join(texts) + "\n"
            page = page if self._ansi else strip_ansi(page)
            self._size += len(page.encode())
            if self._size > INLINE_LIMIT_BYTES:
                raise TextTooLarge(
                    f"{self._what} is over {INLINE_LIMIT_BYTES // (1024 * 1024)} MiB as text: "
                    "page it with /logs, or download logs.txt once the build has ended and its log is archived"
                )
            self._pages.append(page)
        return ended

    def result(self) -> str:
        body = "".join(self._pages)
        if _inline_size(body) > INLINE_LIMIT_BYTES:  # escapes grow when JSON-encoded in the response
            raise TextTooLarge(f"{self._what} is over {INLINE_LIMIT_BYTES // (1024 * 1024)} MiB once encoded")
        return body


def _inline_size(body: str) -> int:
    """The body's size as the Lambda response carries it (a JSON string)."""
    return len(orjson.dumps(body))


def content_disposition(build_id: str) -> str:
    return f'inline; filename="{validate_build_id(build_id)}.log"'


__all__ = ["CONTENT_TYPE", "INLINE_LIMIT_BYTES", "LogText", "TextTooLarge", "content_disposition", "read_text"]

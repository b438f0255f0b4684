"""GET /builds/{id}/events: a build's log as Server-Sent Events, one page per response.

API Gateway's REST integration buffers a Lambda's response, so a response cannot stay open: each
one carries one page (long-polled up to ``wait`` seconds, as ``/logs`` does) and ends; ``retry:``
makes ``EventSource`` reconnect almost at once, sending the last ``id:`` it saw as
``Last-Event-ID``, which resumes strictly after it. Entry ids are the event ids, so delivery is
gap-free and duplicate-free across reconnects. The body::

    : heartbeat                      (a comment: see below)

    retry: <SSE_RETRY_MS>

    id: <entry id>
    data: <entry JSON, the fields of LogEntryOut>

    id: <end entry id>
    event: end
    data: <end entry JSON, with status>

The ``: heartbeat`` comment opens every body. It cannot keep a proxy's idle timer from firing:
the body is buffered, so it arrives with the rest, after the long-poll — what keeps connections
short is ``wait`` (at most 20 s, under API Gateway's 29 s). It marks a live response (``curl``
shows it at once) and keeps the framing of a streaming SSE server, whose heartbeats are the same
comment sent while idle; clients ignore it.

With filters, a page that kept nothing still moves the cursor: a bare ``id: <next>`` block
advances the client's last event id and dispatches nothing. Once the cursor is at or after the
``end`` entry there is nothing left to send: :func:`read_events` returns ``None`` (the route
answers 204, and ``EventSource`` stops reconnecting).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.api.logs import LogFilter, read_logs, read_logs_before
from buildlogs.stream.entries import LogEntry
from buildlogs.stream.reader import LogPage

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

# Reconnect delay the stream asks for: short, since the server (not the client) paces the
# requests — each one long-polls up to ``wait`` seconds while nothing is new.
SSE_RETRY_MS = 100
CONTENT_TYPE = "text/event-stream"
HEARTBEAT = ": heartbeat\n\n"


async def read_events(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    build_id: str,
    *,
    build_exists: Callable[[], bool],
    after: str | None,
    tail: int | None,
    limit: int,
    wait_ms: int,
    log_filter: LogFilter,
) -> str | None:
    """The body of one SSE response, or ``None`` when the log ended at or before ``after``.

    ``after`` (the ``Last-Event-ID`` or the ``after`` parameter) resumes strictly after an entry;
    without it, ``tail`` starts with the log's last ``tail`` entries (sent at once, no wait), else
    the log is read from its start. Errors as :func:`buildlogs.api.logs.read_logs`
    (``LookupError``: unknown build).
    """
    if after is None and tail is not None:
        page = await read_logs_before(
            redis, s3, bucket, build_id, build_exists=build_exists, before=None, limit=tail, log_filter=log_filter
        )
        if page.entries or page.done:
            return render(page, "0-0")
        after = page.next  # an empty tail (no line yet, or none kept): follow from the log's last entry
    cursor = after or "0-0"
    page = await read_logs(
        redis, s3, bucket, build_id, build_exists=build_exists, after=cursor, limit=limit, log_filter=log_filter
    )
    if not page.entries and page.next == cursor:
        if page.done:
            return None
        if wait_ms:
            page = await read_logs(
                redis,
                s3,
                bucket,
                build_id,
                build_exists=build_exists,
                after=cursor,
                limit=limit,
                wait_ms=wait_ms,
                log_filter=log_filter,
            )
    return render(page, cursor)


def render(page: LogPage, cursor: str) -> str:
    """One response body: heartbeat, ``retry:``, one event per entry, a bare ``id:`` if the cursor moved past them."""
    parts = [HEARTBEAT, f"retry: {SSE_RETRY_MS}\n\n"]
    parts.extend(event(entry) for entry in page.entries)
    last = page.entries[-1].id if page.entries else cursor
    if page.next != last and page.next != "0-0":
        parts.append(f"id: {page.next}\n\n")
    return "".join(parts)


def event(entry: LogEntry) -> str:
    """One entry as an SSE event: ``id:`` its id, ``data:`` its JSON (``event: end`` for the end entry).

    The JSON is the entry exactly as ``/logs`` returns it (``event: null`` on plain lines included).
    """
    data = orjson.dumps(entry.model_dump()).decode()
    kind = "event: end\n" if entry.event == "end" else ""
    return f"id: {entry.id}\n{kind}data: {data}\n\n"


__all__ = ["CONTENT_TYPE", "HEARTBEAT", "SSE_RETRY_MS", "event", "read_events", "render"]

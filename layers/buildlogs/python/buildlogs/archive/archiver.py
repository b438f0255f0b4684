"""The archiver: a finished build's whole log stream, as NDJSON, in S3 — complete, bounded, once.

:func:`archive_logs` is idempotent (EventBridge delivers at least once and the sweep may race a
late event): it appends the ``end`` entry only when the stream does not already end with one
(atomically, WATCH/MULTI), archives the stream up to that entry and sets the stream's TTL only
after the object exists. Clients come in as arguments; nothing here imports e2b or creates a
client.
"""

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import WatchError

from buildlogs.archive.index import IndexBuilder, ensure_index, put_index
from buildlogs.archive.upload import DEFAULT_PART_SIZE, StreamingUpload
from buildlogs.clients import is_not_found
from buildlogs.keys import MetaField, archive_key, entry_id_key, logs_key, meta_key, text_key, validate_build_id
from buildlogs.observability import logger, metrics, tracer
from buildlogs.pipeline import lifetime
from buildlogs.settings import get_settings
from buildlogs.statuses import TERMINAL, UNCAUGHT
from buildlogs.stream.ansi import strip_ansi
from buildlogs.stream.entries import entry_record

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

CONTENT_TYPE = "application/x-ndjson"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"  # build.txt and build.ansi.txt (GET /builds/{id}/logs.txt)
PAGE_SIZE = 1000  # XRANGE COUNT: measured fastest (pages of 10,000 are slower)
ARCHIVE_PHASE = "archive"  # phase of the end entry when the stream is empty or missing
KILL_TIMEOUT_SECONDS = 15.0
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE

KillSandbox = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """The archive object of one build: its key, NDJSON line count and size in bytes."""

    key: str
    lines: int
    bytes: int
    status: str = ""
    last_id: str = ""
    uploaded: bool = True  # False: an identical archive already existed and was left untouched


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The stream as archived: its ``end`` entry id (the last id), status and length."""

    last_id: str
    status: str
    lines: int
    appended: bool


class ArchiveIncomplete(RuntimeError):
    """The stream changed while it was being read (transient: the next attempt archives it)."""


@tracer.capture_method(capture_response=False)
async def archive_logs(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    build_id: str,
    status: str,
    *,
    kill_sandbox: KillSandbox | None = None,
    ttl_seconds: int | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    page_size: int = PAGE_SIZE,
) -> ArchiveResult | None:
    """Close the build's log with its ``end`` entry and archive it to ``build-logs/{id}/build.jsonl``.

    Returns the archive, or ``None`` when ``bucket`` is empty (archival skipped: the ``end``
    entry is still written and the stream keeps no TTL — it is the only copy). Raises
    ``ValueError`` for an invalid build id or status before any key is built, and lets
    transient Redis/S3 errors propagate (the caller's retries run; the next attempt finds the
    ``end`` entry already there and writes no second one).

    ``kill_sandbox`` reaps the sandbox of a TIMED_OUT/ABORTED run (default:
    ``buildlogs.pipeline.sandbox.kill_sandbox``, imported only when needed); ``ttl_seconds`` defaults
    to ``LOG_STREAM_TTL_SECONDS``.
    """
    validate_build_id(build_id)
    if status not in TERMINAL:
        raise ValueError(f"status must be one of {', '.join(TERMINAL)}, got {str(status)[:40]!r}")
    if ttl_seconds is None:
        ttl_seconds = get_settings().log_stream_ttl_seconds
    key, mkey, okey = logs_key(build_id), meta_key(build_id), archive_key(build_id)
    try:
        if bucket and not await redis.exists(key):
            # The stream has expired after an earlier archival, or never existed: never overwrite.
            existing = await head_archive(s3, bucket, okey)
            if existing is not None:
                logger.info("stream gone, archive exists: left untouched", extra={"build_id": build_id, "key": okey})
                await asyncio.to_thread(ensure_index, s3, bucket, build_id)  # its index write may have failed
                return existing
        snapshot = await _close_stream(redis, key, status, build_id)
        # After end, not before: the killed command's late failure report then falls after
        # end and is discarded — the log says BUILD ABORTED/TIMED_OUT, not a misleading exit 137.
        await _end_sandbox_use(redis, mkey, build_id, kill_sandbox if status in UNCAUGHT else None, status)
        if not bucket:
            logger.info(
                "LOG_ARCHIVE_BUCKET is empty: archival skipped, the stream keeps no TTL",
                extra={"build_id": build_id, "status": snapshot.status},
            )
            return None
        existing = None if snapshot.appended else await head_archive(s3, bucket, okey)
        if existing is not None and existing.last_id == snapshot.last_id:
            result = existing  # an earlier delivery archived this very stream
            await asyncio.to_thread(ensure_index, s3, bucket, build_id)  # its index write may have failed
        else:
            result = await _upload(redis, s3, bucket, key, okey, snapshot, build_id, part_size, page_size)
            metrics.add_metric(name="ArchivedLines", unit=MetricUnit.Count, value=result.lines)
            metrics.add_metric(name="ArchivedBytes", unit=MetricUnit.Bytes, value=result.bytes)
        pipe = redis.pipeline(transaction=False)
        pipe.expire(key, ttl_seconds)
        pipe.expire(mkey, ttl_seconds)
        await pipe.execute()
    except Exception as exc:
        metrics.add_metric(name="ArchiveFailures", unit=MetricUnit.Count, value=1)
        logger.warning("archival failed", extra={"build_id": build_id, "status": status, "error": repr(exc)})
        raise
    logger.info(
        "build log archived",
        extra={"build_id": build_id, "key": okey, "lines": result.lines, "bytes": result.bytes, "new": result.uploaded},
    )
    return result


async def head_archive(s3: "S3Client", bucket: str, key: str) -> ArchiveResult | None:
    """The archive object at ``key`` as an :class:`ArchiveResult` (from its metadata), or ``None``."""
    try:
        head = await asyncio.to_thread(s3.head_object, Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    meta = head.get("Metadata") or {}
    return ArchiveResult(
        key=key,
        lines=_int(meta.get("lines")),
        bytes=int(head.get("ContentLength") or 0),
        status=str(meta.get("status", "")),
        last_id=str(meta.get("last-id", "")),
        uploaded=False,
    )


async def _end_sandbox_use(
    redis: "Redis | RedisCluster", mkey: str, build_id: str, kill_sandbox: KillSandbox | None, status: str
) -> None:
    """The build is over: give back its iteration lease; an uncaught run (TIMED_OUT/ABORTED) also reaps
    its sandbox, unless a succeeded build still serves from it (issue 12's lifetime rule). Best effort."""
    try:
        sandbox_id = _text(await redis.hget(mkey, MetaField.SANDBOX_ID))
        if not sandbox_id:
            return
        await lifetime.release_lease(redis, sandbox_id, build_id)
        if status not in UNCAUGHT:
            return
        iteration = bool(_text(await redis.hget(mkey, MetaField.ITERATE_FROM)))
        allowed, state = await lifetime.may_kill(redis, sandbox_id, build_id, iteration=iteration)
        if not allowed:
            logger.info(
                "sandbox kept: a succeeded build serves from it",
                extra={"serving": state.serving, "iteration": iteration},
            )
            return
        if kill_sandbox is None:
            # Imported only when a sandbox is to be killed: the archiver never loads e2b otherwise.
            kill_sandbox = importlib.import_module("buildlogs.pipeline.sandbox").kill_sandbox
        await asyncio.wait_for(kill_sandbox(sandbox_id), KILL_TIMEOUT_SECONDS)
        await lifetime.record_killed(redis, sandbox_id)
        logger.info("sandbox killed", extra={"build_id": build_id, "sandbox_id": sandbox_id})
    except Exception as exc:
        logger.warning("could not kill the sandbox", extra={"build_id": build_id, "error": repr(exc)})


async def _close_stream(redis: "Redis | RedisCluster", key: str, status: str, build_id: str) -> _Snapshot:
    """Append ``BUILD <status>`` (uncaught runs) and ``end`` unless the log already has its ``end``.

    The ``end`` id is recorded in the meta hash by the same MULTI that appends it (ids are chosen
    here, under WATCH): a stage still running after an abort or a timeout may add lines after
    ``end`` until it learns the log is closed (LogStreamer then deletes them), so "the last entry
    is ``end``" is no proof — the recorded id is. WATCH/MULTI makes check-and-append atomic: two
    archivers racing (a late event and the sweep) still leave exactly one ``end``. The stream's
    length is read in the same transaction, so ``lines`` counts exactly the entries up to ``end``.
    """
    mkey = meta_key(build_id)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key, mkey)
                recorded = _text(await pipe.hget(mkey, MetaField.END_ID))
                if recorded:
                    return await _closed_snapshot(pipe, key, recorded, status)
                last: Any = await pipe.xrevrange(key, max="+", min="-", count=1)
                fields: dict[str, str] = {}
                last_id = "0-0"
                if last:
                    last_id = _text(last[0][0])
                    fields = {_text(k): _text(v) for k, v in last[0][1].items()}
                    if fields.get("event") == "end":  # closed before end ids were recorded
                        return await _closed_snapshot(pipe, key, last_id, status)
                if last or await pipe.exists(key):  # an emptied stream still remembers its last id
                    info: Any = await pipe.xinfo_stream(key)
                    last_id = max(last_id, _text(info["last-generated-id"]), key=entry_id_key)
                phase = fields.get("phase") or ARCHIVE_PHASE
                now_ms = time.time_ns() // 1_000_000
                ids = _ids_after(last_id, now_ms, 2 if status in UNCAUGHT else 1)
                pipe.multi()  # type: ignore[no-untyped-call]
                if status in UNCAUGHT:
                    line = {"ts": str(now_ms), "source": "system", "phase": phase, "text": f"BUILD {status}"}
                    line.update(event="build_failed", status=status)
                    pipe.xadd(key, line, id=ids[0])  # type: ignore[arg-type]
                end = {"ts": str(now_ms), "source": "system", "phase": phase, "text": f"end of log: {status}"}
                end.update(event="end", status=status)
                pipe.xadd(key, end, id=ids[-1])  # type: ignore[arg-type]
                pipe.hset(mkey, MetaField.END_ID, ids[-1])
                pipe.xlen(key)
                *_ids, length = await pipe.execute()
                logger.info("end entry written", extra={"build_id": build_id, "status": status, "id": ids[-1]})
                return _Snapshot(ids[-1], status, int(length), appended=True)
            except WatchError:
                continue  # the stream changed between the check and the append: look again


async def _closed_snapshot(pipe: Any, key: str, end_id: str, status: str) -> _Snapshot:
    """The snapshot of a log whose ``end`` is ``end_id``: late entries after it do not count."""
    end: Any = await pipe.xrange(key, min=end_id, max=end_id)
    late: Any = await pipe.xrange(key, min=f"({end_id}", max="+")
    pipe.multi()
    pipe.xlen(key)
    (length,) = await pipe.execute()
    end_status = _text(end[0][1].get("status")) if end else ""
    return _Snapshot(end_id, end_status or status, int(length) - len(late), appended=False)


def _ids_after(last_id: str, now_ms: int, count: int) -> list[str]:
    """``count`` explicit entry ids after ``last_id``, timestamped now when the clock allows."""
    last_ms, last_seq = entry_id_key(last_id)
    if now_ms > last_ms:
        return [f"{now_ms}-{seq}" for seq in range(count)]
    return [f"{last_ms}-{last_seq + 1 + n}" for n in range(count)]


async def _upload(
    redis: "Redis | RedisCluster",
    s3: "S3Client",
    bucket: str,
    key: str,
    okey: str,
    snapshot: _Snapshot,
    build_id: str,
    part_size: int,
    page_size: int,
) -> ArchiveResult:
    """Stream the entries up to the snapshot id into the object, page by page.

    The same pass writes the log's text renderings beside it (:func:`text_key`: ``build.txt``
    with escapes stripped, ``build.ansi.txt`` as printed; one entry's ``text`` per line), each a
    streaming upload of its own, so ``logs.txt`` of an archived log is one S3 object. They are
    completed before ``build.jsonl``: an archive object never exists without them. On a failure
    nothing of this attempt is left behind: uploads in progress are aborted and the renderings
    already completed are deleted (best effort, logged: :meth:`StreamingUpload.abort`); the
    retry writes all three again. (An older ``build.jsonl`` being replaced then stays without
    renderings: ``logs.txt`` renders it from the NDJSON.)

    Then write its index sidecar (``buildlogs.archive.index``: byte offsets of every 1,000th
    entry and the stage summary) — after the log succeeded, best effort.
    """
    metadata = {
        "build-id": build_id,
        "status": snapshot.status,
        "lines": str(snapshot.lines),
        "last-id": snapshot.last_id,
    }
    upload = StreamingUpload(s3, bucket, okey, content_type=CONTENT_TYPE, metadata=metadata, part_size=part_size)
    stripped, kept = (
        StreamingUpload(
            s3,
            bucket,
            text_key(build_id, ansi=ansi),
            content_type=TEXT_CONTENT_TYPE,
            metadata=metadata,
            part_size=part_size,
        )
        for ansi in (False, True)
    )
    dumps, record = orjson.dumps, entry_record
    lines = 0
    index = IndexBuilder()
    next_page: asyncio.Future[Any] | None = None
    try:
        page: Any = await redis.xrange(key, min="-", max=snapshot.last_id, count=page_size)
        while page:
            last = _text(page[-1][0])
            more = last != snapshot.last_id and len(page) == page_size
            if more:  # fetch the next page while this one is serialised (one page ahead at most)
                next_page = asyncio.ensure_future(
                    redis.xrange(key, min=f"({last}", max=snapshot.last_id, count=page_size)
                )
            # One bytearray per page: each serialised line is freed at once (orjson's result
            # objects are ~4 KiB each, a list of a page of them would dominate memory).
            chunk, base, line, mark = bytearray(), upload.bytes_written, lines, index.next_line
            texts: list[str] = []
            for entry_id, fields in page:
                entry = record(entry_id, fields)
                if line == mark:  # every 1,000th entry: where its line starts in the object
                    index.mark(entry["id"], base + len(chunk))
                    mark = index.next_line
                if entry["source"] == "system":
                    index.feed(entry)
                chunk += dumps(entry, option=_DUMPS_OPTIONS)
                texts.append(entry["text"])
                line += 1
            lines += len(page)
            await upload.write(chunk)
            text = "\n".join(texts) + "\n"  # one string per page; escapes never span a newline
            plain, encoded = strip_ansi(text), text.encode()
            await kept.write(encoded)
            await stripped.write(encoded if plain is text else plain.encode())  # no escapes: one copy
            if next_page is None:
                break
            page, next_page = await next_page, None
        if lines != snapshot.lines:
            raise ArchiveIncomplete(
                f"stream of {build_id} changed while archiving: {lines} entries read, {snapshot.lines} expected"
            )
        await stripped.finish()
        await kept.finish()
        size = await upload.finish()
    except BaseException:
        if next_page is not None:
            next_page.cancel()
        for each in (stripped, kept, upload):
            await each.abort()
        raise
    document = index.document(lines=lines, last_id=snapshot.last_id, size=size)
    await asyncio.to_thread(put_index, s3, bucket, build_id, document)
    return ArchiveResult(okey, lines, size, snapshot.status, snapshot.last_id, uploaded=True)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


__all__ = [
    "CONTENT_TYPE",
    "TERMINAL",
    "TEXT_CONTENT_TYPE",
    "ArchiveIncomplete",
    "ArchiveResult",
    "KillSandbox",
    "archive_logs",
    "head_archive",
]

"""A streaming NDJSON upload to S3 with bounded memory: one PUT when small, multipart otherwise.

Bytes are buffered up to ``part_size``; each full buffer becomes one part (every part but the
last is at least ``part_size`` ≥ 5 MiB, as S3 requires), uploaded on a worker thread while the
caller produces the next one — at most one part in flight, so memory stays near two parts
whatever the object's size. :meth:`StreamingUpload.abort` leaves nothing behind: it aborts a
multipart upload in progress, and deletes the object if this upload already completed it (for
a caller whose later step failed: several objects that only make sense together).

``s3`` is a boto3 S3 client (any object with its methods); its calls run in a thread so the
event loop keeps reading Redis while a part uploads.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from buildlogs.observability import logger

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_SIZE = 8 * 1024 * 1024


class StreamingUpload:
    """Write bytes with :meth:`write`, then :meth:`finish` (or :meth:`abort` on failure).

    ``metadata`` and ``content_type`` are set when the upload starts (CreateMultipartUpload),
    or with the single PUT of an object smaller than ``part_size``.
    """

    def __init__(
        self,
        s3: "S3Client",
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: Mapping[str, str],
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < 1:
            raise ValueError(f"part_size must be positive, got {part_size}")
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._metadata = dict(metadata)
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: asyncio.Future[None] | None = None
        self.completed = False  # finish() succeeded: the object exists (abort() deletes it)
        self.bytes_written = 0
        self.parts_uploaded = 0

    @property
    def multipart(self) -> bool:
        """Whether the object goes up in parts (the buffer outgrew one part)."""
        return self._upload_id is not None

    async def write(self, data: bytes | bytearray) -> None:
        """Append ``data``; a buffer of ``part_size`` bytes or more becomes the next part."""
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self._part_size:
            await self._send_part()

    async def finish(self) -> int:
        """Upload what is buffered and complete the object; returns its size in bytes."""
        if self._upload_id is None:
            body, self._buffer = self._buffer, bytearray()
            await _call(
                self._s3.put_object,
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(body),
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
            self.completed = True
            return self.bytes_written
        if self._buffer or not self._parts:
            await self._send_part()
        await self._wait_in_flight()
        await _call(
            self._s3.complete_multipart_upload,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None
        self.completed = True
        return self.bytes_written

    async def abort(self) -> None:
        """Abandon the object: wait for a part in flight, then abort the multipart upload — or,
        if :meth:`finish` already completed the object, delete it.

        Best effort (it runs while another error propagates): a failure to abort or delete is
        logged, never raised; the bucket's lifecycle rule for incomplete multipart uploads is the
        last resort for those. (A completed object whose delete failed stays; the caller's retry
        overwrites it.)
        """
        if self.completed:
            self.completed = False
            try:
                await _call(self._s3.delete_object, Bucket=self._bucket, Key=self._key)
                logger.info("completed object deleted: its upload was abandoned", extra={"key": self._key})
            except Exception as exc:
                logger.error("could not delete an abandoned object", extra={"key": self._key, "error": repr(exc)})
            return
        self._buffer = bytearray()
        if self._in_flight is not None:
            with contextlib.suppress(Exception):  # its error is the one being handled already
                await self._in_flight
            self._in_flight = None
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await _call(self._s3.abort_multipart_upload, Bucket=self._bucket, Key=self._key, UploadId=upload_id)
        except Exception as exc:
            logger.error("could not abort multipart upload", extra={"key": self._key, "error": repr(exc)})

    async def _send_part(self) -> None:
        if self._upload_id is None:
            created = await _call(
                self._s3.create_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
            self._upload_id = str(created["UploadId"])
        await self._wait_in_flight()  # at most one part in flight: memory stays near two parts
        body, self._buffer = bytes(self._buffer), bytearray()
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        self._in_flight = asyncio.ensure_future(self._upload_part(number, body))

    async def _upload_part(self, number: int, body: bytes) -> None:
        response = await _call(
            self._s3.upload_part,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts[number - 1]["ETag"] = response["ETag"]
        self.parts_uploaded += 1

    async def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight


async def _call(method: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one blocking boto3 call on a worker thread."""
    call: Awaitable[Any] = asyncio.to_thread(method, **kwargs)
    return await call

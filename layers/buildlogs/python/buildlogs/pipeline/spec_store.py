"""Where the API stores a build's validated BuildSpec and the stages read it (by ``spec_ref``).

AWS: ``s3://$SOURCES_BUCKET/sources/{build_id}/spec.json``; local runs: ``file://<root>/sources/{build_id}/spec.json``.
A reference is accepted only if it names this build's own key, so a crafted ``spec_ref`` cannot
make a stage read another build's (or any other) object.
"""

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from buildlogs.clients import error_code, s3_client
from buildlogs.errors import InvalidInput
from buildlogs.keys import spec_key
from buildlogs.pipeline.models import BuildSpec

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


class SpecAlreadyStored(Exception):
    """A spec is already stored for this build: the first write wins (idempotent submits)."""


class SpecStore(Protocol):
    def save(self, build_id: str, spec: BuildSpec) -> str:
        """Store ``spec`` for ``build_id`` unless one is stored; return its ``spec_ref``.

        Raises :class:`SpecAlreadyStored` when a spec exists (atomically: two racing writers
        cannot both win), so the caller compares it with its own.
        """

    def load(self, spec_ref: str, build_id: str) -> BuildSpec:
        """The spec ``spec_ref`` names, which must be ``build_id``'s own."""


def _dump(spec: BuildSpec) -> bytes:
    return spec.model_dump_json(exclude_none=True).encode("utf-8")


def _parse(data: bytes, spec_ref: str) -> BuildSpec:
    try:
        return BuildSpec.model_validate_json(data)
    except ValueError as exc:
        raise InvalidInput(f"the stored build spec {spec_ref} is invalid") from exc


class S3SpecStore:
    """Specs in S3; ``client`` is a boto3 S3 client (``boto3.client("s3")`` when omitted)."""

    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        if not bucket:
            raise ValueError("S3SpecStore needs a bucket (SOURCES_BUCKET)")
        self._bucket = bucket
        self._client = client if client is not None else s3_client()

    def save(self, build_id: str, spec: BuildSpec) -> str:
        key = spec_key(build_id)
        try:  # a conditional write: S3 refuses it when the key exists
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=_dump(spec), ContentType="application/json", IfNoneMatch="*"
            )
        except ClientError as exc:
            if error_code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise SpecAlreadyStored(build_id) from None
            raise
        return f"s3://{self._bucket}/{key}"

    def load(self, spec_ref: str, build_id: str) -> BuildSpec:
        parsed = urlparse(spec_ref)
        if parsed.scheme != "s3" or parsed.netloc != self._bucket or parsed.path.lstrip("/") != spec_key(build_id):
            raise InvalidInput(f"spec_ref must be s3://{self._bucket}/{spec_key(build_id)}")
        body = self._client.get_object(Bucket=self._bucket, Key=spec_key(build_id))["Body"].read()
        return _parse(body, spec_ref)


class LocalSpecStore:
    """Specs in a local directory (local runs and tests)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._root = Path(root) if root is not None else Path(tempfile.gettempdir()) / "buildlogs-specs"

    def _path(self, build_id: str) -> Path:
        return self._root / spec_key(build_id)

    def save(self, build_id: str, spec: BuildSpec) -> str:
        path = self._path(build_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("xb") as file:  # exclusive create: the first write wins
                file.write(_dump(spec))
        except FileExistsError:
            raise SpecAlreadyStored(build_id) from None
        return path.resolve().as_uri()

    def load(self, spec_ref: str, build_id: str) -> BuildSpec:
        parsed = urlparse(spec_ref)
        if parsed.scheme != "file" or not parsed.path.endswith("/" + spec_key(build_id)):
            raise InvalidInput(f"spec_ref must be a file:// URL ending in {spec_key(build_id)}")
        path = Path(parsed.path)
        if not path.is_file():
            raise InvalidInput(f"no build spec at {spec_ref}")
        return _parse(path.read_bytes(), spec_ref)


def store_for(spec_ref: str, *, sources_bucket: str = "", s3: "S3Client | None" = None) -> SpecStore:
    """The store that can read ``spec_ref`` (by its scheme)."""
    scheme = urlparse(spec_ref).scheme
    if scheme == "s3":
        return S3SpecStore(sources_bucket or urlparse(spec_ref).netloc, s3)
    if scheme == "file":
        return LocalSpecStore()
    raise InvalidInput("spec_ref must be an s3:// or file:// URL")

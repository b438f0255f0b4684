"""One log stream entry: the plain record the archiver writes, the validated model readers return."""

import contextlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Source = Literal["stdout", "stderr", "system"]

# Extras that are integers on the wire (Redis stores strings).
INT_FIELDS = frozenset({"ts", "duration_ms", "exit_code", "dropped"})


def entry_record(entry_id: str | bytes, fields: dict[Any, Any]) -> dict[str, Any]:
    """One stream entry as the archive's NDJSON object: ``id, ts, source, text, phase`` + extras.

    Plain dicts on purpose: the archiver converts millions of entries and needs no validation.
    """
    record: dict[str, Any] = {
        "id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        "ts": 0,
        "source": "system",
        "text": "",
        "phase": "",
    }
    if fields and isinstance(next(iter(fields)), str):
        record.update(fields)  # a decode_responses client: the common, fast path
    else:
        for key, value in fields.items():
            name = key.decode() if isinstance(key, bytes) else key
            record[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    for name in INT_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                record[name] = int(value)
    return record


class LogEntry(BaseModel):
    """One line (or system event) of a build's log stream, with its stream entry id.

    System entries may carry ``event`` (stage_start, stage_end, build_failed, truncated, end)
    and its fields (``duration_ms``, ``exit_code``, ``dropped``, ``reason``, ``status``, ...),
    reachable as attributes.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    ts: int
    source: Source
    text: str
    phase: str
    event: str | None = None

    @classmethod
    def from_stream(cls, entry_id: str | bytes, fields: dict[Any, Any]) -> "LogEntry":
        """Build an entry from an XRANGE/XREAD pair (str or bytes, as the client returns)."""
        return cls.model_validate(entry_record(entry_id, fields))

    def to_record(self) -> dict[str, Any]:
        """The archive's NDJSON object (same shape as :func:`entry_record`)."""
        return self.model_dump(exclude_none=True)

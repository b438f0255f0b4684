"""Build ids and the Redis/S3 keys derived from them — validated before any key is built."""

import re
from enum import StrEnum

BUILD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_BUILD_ID = re.compile(BUILD_ID_PATTERN)
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def validate_build_id(build_id: object) -> str:
    """Return ``build_id`` if it may reach a Redis key, an S3 key or a Step Functions name."""
    if not isinstance(build_id, str) or not _BUILD_ID.fullmatch(build_id):
        raise ValueError(f"invalid build id {str(build_id)[:80]!r}: must match {BUILD_ID_PATTERN}")
    return build_id


_MAX_ID_PART = 2**64 - 1  # Redis rejects larger parts: a 500 waiting to happen


def validate_entry_id(entry_id: object) -> str:
    """Return ``entry_id`` if it is a Redis stream entry id (``<ms>-<seq>``, each part < 2**64)."""
    if (
        not isinstance(entry_id, str)
        or not _ENTRY_ID.fullmatch(entry_id)
        or any(int(part) > _MAX_ID_PART for part in entry_id.split("-"))
    ):
        raise ValueError(f"invalid cursor {str(entry_id)[:80]!r}: expected a stream entry id like 1700000000000-0")
    return entry_id


class MetaField(StrEnum):
    """The fields of the ``job:{<build_id>}:meta`` hash: no other module spells a field name."""

    SANDBOX_ID = "sandbox_id"  # set by Provision: the archiver reaps a TIMED_OUT/ABORTED run's sandbox
    ITERATE_FROM = "iterate_from"  # set by Provision of an iteration: its sandbox serves that build
    FAILED_STAGE = "failed_stage"  # the stage that failed (Cleanup reports it)
    END_ID = "end_id"  # the ``end`` entry's id, set by the archiver: nothing may follow it
    TRIM_NOTICE_ID = "trim_notice_id"  # the one trimming notice now in the stream
    TRIM_NOTICES = "trim_notices"  # how many notices were written (they are not log lines)
    TRIM_DROPPED = "trim_dropped"  # what the current notice reports


def logs_key(build_id: str) -> str:
    """The build's log stream; ``{build_id}`` is the cluster hash tag shared by all its keys."""
    return f"job:{{{validate_build_id(build_id)}}}:logs"


def meta_key(build_id: str) -> str:
    """The build's metadata hash (sandbox id, trimming bookkeeping); expires with the stream."""
    return f"job:{{{validate_build_id(build_id)}}}:meta"


def summary_key(build_id: str) -> str:
    """The API's cache of a live log's stage summary (same slot as the stream, the stream's TTL)."""
    return f"job:{{{validate_build_id(build_id)}}}:summary"


def archive_key(build_id: str) -> str:
    """Where the archiver writes the build's NDJSON log."""
    return f"build-logs/{validate_build_id(build_id)}/build.jsonl"


def text_key(build_id: str, *, ansi: bool = False) -> str:
    """The archive's plain-text rendering beside ``build.jsonl``: ``build.txt`` (escapes stripped)
    or ``build.ansi.txt`` (escapes kept) — one entry's ``text`` per line, what ``logs.txt`` serves."""
    name = "build.ansi.txt" if ansi else "build.txt"
    return f"build-logs/{validate_build_id(build_id)}/{name}"


def index_key(build_id: str) -> str:
    """The archive's sidecar index (byte offsets, stage summary), beside ``build.jsonl``."""
    return f"build-logs/{validate_build_id(build_id)}/index.json"


def spec_key(build_id: str) -> str:
    """Where the API stores the validated BuildSpec for the stages to read."""
    return f"sources/{validate_build_id(build_id)}/spec.json"


# -- a sandbox's keys (issue 12): its own hash tag, never in a pipeline with a build's keys --------

_SANDBOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_sandbox_id(sandbox_id: object) -> str:
    """Return ``sandbox_id`` if it may reach a Redis key (E2B ids and ``local-…`` ids both fit)."""
    if not isinstance(sandbox_id, str) or not _SANDBOX_ID.fullmatch(sandbox_id):
        raise ValueError(f"invalid sandbox id {str(sandbox_id)[:80]!r}")
    return sandbox_id


def sandbox_key(sandbox_id: str) -> str:
    """The sandbox's lifetime record: expiry, the build it serves, its dev server, its install."""
    return f"sandbox:{{{validate_sandbox_id(sandbox_id)}}}:state"


def sandbox_files_key(sandbox_id: str) -> str:
    """Path → content hash of the project files in the sandbox now (Scaffold writes only changes)."""
    return f"sandbox:{{{validate_sandbox_id(sandbox_id)}}}:files"


def sandbox_lease_key(sandbox_id: str) -> str:
    """The iteration lease: the build id of the one iteration running in the sandbox."""
    return f"sandbox:{{{validate_sandbox_id(sandbox_id)}}}:lease"


def entry_id_key(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as a sortable ``(ms, seq)`` pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)

"""Full-log search: every entry of a build's log, live from Redis or streamed from the archive.

Each request scans the whole log, so ``total`` is exact (every stage, whatever the cursor).
A plain query is a case-insensitive substring (``casefold``: "STRASSE" finds "straße") of
the entry's ``text``; a regex is RE2 (linear time, case-insensitive, no backreferences), so no
pattern can make a scan super-linear. Linear is not fast enough on its own: RE2 falls back from
its DFA to its NFA when a program is large (``.{1000}.{1000}$Z`` took ~0.3 s per 16 KiB line),
and the NFA's cost per byte grows with the program. So a pattern whose compiled program is over
``MAX_REGEX_PROGRAM_SIZE`` instructions is refused (``InvalidQuery``: "regex too complex"), and
every scan has a deadline (``SEARCH_DEADLINE_SECONDS``, under API Gateway's 29 s): past it the
scan raises :class:`SearchTimeout` (the route answers 503 ``search_timeout``), never a hung request.

The archive is scanned in raw blocks of NDJSON lines and only candidate lines are parsed. For
a plain query the candidates are the lines where its needle (casefolded, JSON-escaped as the
archiver's orjson writes it, lowered) occurs in the block's lowered bytes, plus every line with
a non-ASCII byte. This never drops a match: an ASCII line's ``text`` is ASCII, where casefold
is lower, and orjson escapes each character on its own (in lowercase hex), so a match in
``text`` is a match in the line; a non-ASCII line (``é`` could casefold anywhere: the Kelvin
sign is ``k``) always takes the full test. A regex parses every line.
"""

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import re2
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buildlogs.archive.reader import EntryFilter, iter_archive_blocks
from buildlogs.keys import entry_id_key, logs_key
from buildlogs.limits import PageBudget
from buildlogs.stream.entries import LogEntry, entry_record

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MAX_QUERY_CHARS = 256
# RE2 program instructions a regex may compile to (the larger of its forward and reverse
# programs). Ordinary patterns are far below it: ``error|warn`` 13, ``\bTS\d{4}\b`` 14,
# ``[a-f0-9]{40}`` 84, ``[a-f0-9]{64}`` 132, ``.{100}`` 804; ``.{1000}.{1000}$Z`` is 16,006.
MAX_REGEX_PROGRAM_SIZE = 1000
# A scan stops after this many seconds (read at each call: tests lower it). API Gateway ends
# a request at 29 s; the rest is left for the lookups before the scan and the response.
SEARCH_DEADLINE_SECONDS = 20.0
PAGE_SIZE = 1000  # XRANGE page of a live scan
_ERROR_PREFIX = re.compile(r"^(?:re2\.)?error:\s*")


class InvalidQuery(ValueError):
    """A query the API refuses with a 400; the message is the reason."""


class SearchTimeout(Exception):
    """The scan ran past its deadline (``SEARCH_DEADLINE_SECONDS``): the query must be narrowed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search was stopped after {seconds:g} s without finishing the log: narrow the query "
            "(longer plain text, a simpler pattern, or the phase/source filters)"
        )
        self.seconds = seconds


class _Deadline:
    """``check()`` raises :class:`SearchTimeout` once ``seconds`` have passed since creation."""

    __slots__ = ("_at", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() >= self._at:
            raise SearchTimeout(self._seconds)


def _regex_matcher(pattern: str) -> Callable[[str], bool]:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise InvalidQuery(f"invalid regex: {_ERROR_PREFIX.sub('', text)}") from None
    size = max(compiled.programsize, compiled.reverseprogramsize)
    if size > MAX_REGEX_PROGRAM_SIZE:
        raise InvalidQuery(
            f"regex too complex: it compiles to {size} RE2 instructions, at most {MAX_REGEX_PROGRAM_SIZE} "
            "are allowed (use smaller repetition counts, e.g. .* instead of .{1000})"
        )
    search = compiled.search
    return lambda text: search(text) is not None


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A parsed query: what :meth:`matches` tests on an entry's ``text``; build it with :meth:`parse`."""

    q: str
    regex: bool
    _test: Callable[[str], bool] = field(repr=False, compare=False)
    # Plain queries: the lowered JSON-escaped casefolded needle for all-ASCII raw lines, or
    # ``None`` when it is not ASCII (then no ASCII line can match).
    _needle: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, q: str, *, regex: bool = False) -> "LogQuery":
        """``InvalidQuery`` for an empty or over-long query, a pattern RE2 refuses, or one too complex."""
        if not isinstance(q, str) or not 1 <= len(q) <= MAX_QUERY_CHARS:
            raise InvalidQuery(f"q must be 1 to {MAX_QUERY_CHARS} characters")
        if regex:
            return cls(q, True, _regex_matcher(q))
        folded = q.casefold()
        needle = orjson.dumps(folded)[1:-1].lower() if folded.isascii() else None
        return cls(q, False, lambda text: folded in text.casefold(), needle)

    def matches(self, text: str) -> bool:
        return self._test(text)

    def candidates(self, block: bytes) -> Iterator[bytes]:
        """The NDJSON lines of ``block`` (whole lines) that may match: a superset, never fewer.

        Plain queries: the lines where the needle occurs in the lowered bytes, and every line
        with a non-ASCII byte (both found with ``bytes.find`` over the whole block), in order.
        """
        if self.regex:
            yield from (line for line in block.split(b"\n") if line)
            return
        folded = block.translate(_FOLD)
        if self._needle is None:  # only a non-ASCII line can match
            spans = _spans_of(block, folded, b"\x80")
        elif block.isascii():
            spans = _spans_of(block, folded, self._needle)
        else:
            spans = sorted({*_spans_of(block, folded, self._needle), *_spans_of(block, folded, b"\x80")})
        for start, end in spans:
            yield block[start:end]


# One C pass over a block: ASCII lowered, every non-ASCII byte turned into 0x80 (a marker no
# ASCII needle holds), so both the needle and the non-ASCII lines are found with bytes.find.
_FOLD = bytes(byte + 32 if 65 <= byte <= 90 else min(byte, 0x80) for byte in range(256))


def _spans_of(block: bytes, haystack: bytes, needle: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each line of ``block`` where ``haystack`` (the same length) holds
    ``needle``, in order. The needle holds no newline (JSON escapes it)."""
    spans: list[tuple[int, int]] = []
    find, rfind, length = haystack.find, block.rfind, len(block)
    position = find(needle)
    while position != -1:
        end = block.find(b"\n", position)
        end = length if end == -1 else end
        spans.append((rfind(b"\n", 0, position) + 1, end))
        position = find(needle, end + 1)
    return spans


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Matches after the cursor, the whole log's match count, and the cursor for the next page.

    ``next`` is the last match returned (``after`` if none); ``done``: no match after ``next``.
    A page holds at most ``limit`` matches and stops early before the one that would take it
    past its byte budget (:class:`~buildlogs.limits.PageBudget`; the first always fits).
    """

    matches: list[LogEntry]
    total: int
    next: str
    done: bool


class _Results:
    """Counts every match and keeps the first ``limit`` strictly after the cursor (within the byte budget)."""

    def __init__(self, after: str, limit: int) -> None:
        self._after, self._after_key, self._limit = after, entry_id_key(after), limit
        self._matches: list[LogEntry] = []
        self._budget = PageBudget()
        self._total = 0
        self._more = False  # a match after the cursor was left out: the page is full

    def add(self, record: dict[str, Any]) -> None:
        self._total += 1
        if self._more or entry_id_key(str(record["id"])) <= self._after_key:
            return
        if len(self._matches) < self._limit and self._budget.take(record):
            self._matches.append(LogEntry.model_validate(record))
        else:
            self._more = True

    def page(self) -> SearchPage:
        last = self._matches[-1].id if self._matches else self._after
        return SearchPage(self._matches, self._total, last, not self._more)


def search_archive(
    s3: "S3Client",
    bucket: str,
    build_id: str,
    query: LogQuery,
    after: str,
    limit: int,
    keep: EntryFilter | None = None,
) -> SearchPage:
    """Search the archived log, streamed in blocks (``ArchiveMissing`` if there is none).

    ``SearchTimeout`` once ``SEARCH_DEADLINE_SECONDS`` have passed (checked before each candidate line).
    """
    results = _Results(after, limit)
    deadline = _Deadline(SEARCH_DEADLINE_SECONDS)
    loads, candidates, matches, check = orjson.loads, query.candidates, query.matches, deadline.check
    blocks = iter_archive_blocks(s3, bucket, build_id)
    try:
        for block in blocks:
            check()
            for line in candidates(block):
                check()
                record = loads(line)
                if (keep is None or keep(record)) and matches(record.get("text", "")):
                    results.add(record)
    finally:
        blocks.close()
    return results.page()


async def search_stream(
    redis: "Redis | RedisCluster",
    build_id: str,
    query: LogQuery,
    after: str,
    limit: int,
    keep: EntryFilter | None = None,
) -> SearchPage:
    """Search the live stream in XRANGE pages of 1,000, up to its ``end`` entry (a late write is not log).

    ``SearchTimeout`` once ``SEARCH_DEADLINE_SECONDS`` have passed (checked before each entry).
    """
    results = _Results(after, limit)
    check = _Deadline(SEARCH_DEADLINE_SECONDS).check
    key, start = logs_key(build_id), "-"
    while True:
        check()
        page: Any = await redis.xrange(key, min=start, max="+", count=PAGE_SIZE)
        for entry_id, fields in page:
            check()
            record = entry_record(entry_id, fields)
            if (keep is None or keep(record)) and query.matches(record["text"]):
                results.add(record)
            if record.get("event") == "end":
                return results.page()
        if len(page) < PAGE_SIZE:
            return results.page()
        start = f"({record['id']}"


__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_REGEX_PROGRAM_SIZE",
    "SEARCH_DEADLINE_SECONDS",
    "InvalidQuery",
    "LogQuery",
    "SearchPage",
    "SearchTimeout",
    "search_archive",
    "search_stream",
]

"""search_logs: exact totals over the whole log, paging with ``after``, filters, edge cases; live = archived."""

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from buildlogs.api import search as search_module
from buildlogs.api.logs import LogFilter, search_logs
from buildlogs.api.search import InvalidQuery, LogQuery, SearchPage, SearchTimeout
from buildlogs.archive.archiver import archive_logs
from buildlogs.keys import index_key, logs_key
from buildlogs.stream.streamer import LogStreamer
from tests.support.archive import BUCKET, archived_records

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("stream_cleanup")]

TTL = 600
ESC = "\x1b"

# (stage, stdout lines, stderr lines): matches of "error" in every stage, escapes, non-ASCII.
STAGES: list[tuple[str, list[str], list[str]]] = [
    ("provision", ["sandbox ready", "ERROR: none so far"], []),
    (
        "install",
        ["added 3 packages", 'he said: say "hi" there', "copy C:\\path\\file", "straße 5", "5 \u212aelvin"],
        ["npm error deprecated"],
    ),
    (
        "build",
        [f"{ESC}[31mError{ESC}[0m in module", "STRASSE 7", "Kelvin scale", "été ÉTÉ", "10 ok", "literal u001b"],
        ["warn: no errors", f"{ESC}[1;33mwarning{ESC}[0m"],
    ),
    ("start", ["listening on 3000", "ﬁle ligature", "tab\there"], ["Error: EADDRINUSE"]),
]


async def write_search_log(redis: Redis, build_id: str) -> None:
    """The stages above through the real LogStreamer (stage lines, stage ends), then a failure event."""
    streamer = LogStreamer(redis, build_id, "provision", flush_lines=50, flush_interval_ms=0)
    for stage, stdout, stderr in STAGES:
        await streamer.stage(stage)
        for line in stdout:
            await streamer.on_stdout(line + "\n")
        for line in stderr:
            await streamer.on_stderr(line + "\n")
        await streamer.end_stage(exit_code=0)
    await streamer.write_event("the start stage reported an error", event="build_failed", exit_code=1)
    await streamer.close()


async def archived(redis: Redis, s3: Any, build_id: str) -> list[dict[str, Any]]:
    """Archive the log (its stream kept, with the end entry added); the archive's records."""
    result = await archive_logs(redis, s3, BUCKET, build_id, "FAILED", ttl_seconds=TTL)
    assert result is not None
    return archived_records(s3, build_id)


def known() -> bool:
    return True


async def search(
    redis: Redis,
    s3: Any,
    build_id: str,
    q: str,
    *,
    regex: bool = False,
    after: str = "0-0",
    limit: int = 100,
    **filters: str,
) -> SearchPage:
    return await search_logs(
        redis,
        s3,
        BUCKET,
        build_id,
        build_exists=known,
        query=LogQuery.parse(q, regex=regex),
        after=after,
        limit=limit,
        log_filter=LogFilter(**filters) if filters else None,
    )


def texts(page: SearchPage) -> list[str]:
    return [entry.text for entry in page.matches]


# query, regex, filters -> the texts that match, in log order (written out by hand, not computed)
CASES: list[tuple[str, bool, dict[str, str], list[str]]] = [
    (
        "error",
        False,
        {},
        [
            "ERROR: none so far",
            "npm error deprecated",
            f"{ESC}[31mError{ESC}[0m in module",
            "warn: no errors",
            "Error: EADDRINUSE",
            "the start stage reported an error",
        ],
    ),
    ("error", False, {"phase": "build"}, [f"{ESC}[31mError{ESC}[0m in module", "warn: no errors"]),
    ("error", False, {"source": "stderr"}, ["npm error deprecated", "warn: no errors", "Error: EADDRINUSE"]),
    ("error", False, {"phase": "start", "source": "system"}, ["the start stage reported an error"]),
    ("STRASSE", False, {}, ["straße 5", "STRASSE 7"]),
    ("ß", False, {}, ["straße 5", "STRASSE 7"]),
    ("kelvin", False, {}, ["5 \u212aelvin", "Kelvin scale"]),  # the Kelvin sign casefolds to k
    ("été", False, {}, ["été ÉTÉ"]),
    ("FILE", False, {}, ["copy C:\\path\\file", "ﬁle ligature"]),  # ﬁ casefolds to fi
    ('say "HI"', False, {}, ['he said: say "hi" there']),
    ('"', False, {}, ['he said: say "hi" there']),
    ("C:\\PATH\\", False, {}, ["copy C:\\path\\file"]),
    ("\\", False, {}, ["copy C:\\path\\file"]),
    (f"{ESC}[31m", False, {}, [f"{ESC}[31mError{ESC}[0m in module"]),
    (ESC, False, {}, [f"{ESC}[31mError{ESC}[0m in module", f"{ESC}[1;33mwarning{ESC}[0m"]),
    ("u001b", False, {}, ["literal u001b"]),  # the escaped ESC in the raw line is no match
    ("\t", False, {}, ["tab\there"]),
    ("--- ", False, {"phase": "install"}, ["--- Installing dependencies ---"]),
    ("nothing like this", False, {}, []),
    ("err(or|no)", True, {"source": "stderr"}, ["npm error deprecated", "warn: no errors", "Error: EADDRINUSE"]),
    (r"^\d+ OK$", True, {}, ["10 ok"]),
    (r"\x1b\[1;33m", True, {}, [f"{ESC}[1;33mwarning{ESC}[0m"]),
    ("ÉTÉ$", True, {}, ["été ÉTÉ"]),
    ('"hi"', True, {}, ['he said: say "hi" there']),
    (r"c:\\path", True, {}, ["copy C:\\path\\file"]),
]


async def run_cases(redis: Redis, s3: Any, build_id: str) -> list[SearchPage]:
    return [await search(redis, s3, build_id, q, regex=regex, **filters) for q, regex, filters, _ in CASES]


async def test_totals_are_exact_and_the_same_live_archived_and_unindexed(redis: Redis, s3: Any, build_id: str) -> None:
    # GIVEN a failed build's log with matches in every stage, archived while its stream lives
    await write_search_log(redis, build_id)
    records = await archived(redis, s3, build_id)
    assert "--- Installing dependencies ---" in [r["text"] for r in records]

    # WHEN every case is searched live, then from the archive once the stream is gone
    live = await run_cases(redis, s3, build_id)
    await redis.delete(logs_key(build_id))
    from_archive = await run_cases(redis, s3, build_id)
    s3.delete_object(Bucket=BUCKET, Key=index_key(build_id))
    unindexed = await run_cases(redis, s3, build_id)

    # THEN each finds exactly the expected lines, with the exact total, done, next at the last match
    for (q, regex, filters, expected), page in zip(CASES, live, strict=True):
        assert (texts(page), page.total, page.done) == (expected, len(expected), True), (q, regex, filters)
        assert page.next == (page.matches[-1].id if page.matches else "0-0")
    # AND the archive gives the same answers, entry for entry
    assert from_archive == live
    assert unindexed == live


@pytest.mark.parametrize("archived_log", [False, True], ids=["live", "archived"])
async def test_after_pages_through_the_matches_with_a_constant_total(
    redis: Redis, s3: Any, build_id: str, archived_log: bool
) -> None:
    # GIVEN the log, live or archived
    await write_search_log(redis, build_id)
    await archived(redis, s3, build_id)
    if archived_log:
        await redis.delete(logs_key(build_id))

    # WHEN the matches of "error" are paged two at a time following next
    pages, cursor = [], "0-0"
    while True:
        page = await search(redis, s3, build_id, "error", after=cursor, limit=2)
        pages.append(page)
        cursor = page.next
        if page.done:
            break

    # THEN the pages hold every match once, in order; every page tells the whole log's total
    assert [t for page in pages for t in texts(page)] == CASES[0][3]
    assert [page.total for page in pages] == [6, 6, 6]
    assert [page.done for page in pages] == [False, False, True]
    # AND after the last match there is nothing, next stays where it was and the total is still exact
    past = await search(redis, s3, build_id, "error", after=cursor)
    assert (past.matches, past.total, past.next, past.done) == ([], 6, cursor, True)
    # AND a cursor between matches starts at the next match
    middle = await search(redis, s3, build_id, "error", after=pages[0].matches[0].id, limit=1)
    assert texts(middle) == ["npm error deprecated"]
    assert (middle.next, middle.done) == (middle.matches[0].id, False)


@pytest.mark.parametrize("archived_log", [False, True], ids=["live", "archived"])
async def test_a_large_log_is_counted_exactly_across_scan_blocks_and_xrange_pages(
    redis: Redis, s3: Any, build_id: str, archived_log: bool
) -> None:
    # GIVEN 20,000 lines (several 256 KiB scan blocks, 20 XRANGE pages): every 7th holds "Needle",
    # every 11th a non-ASCII line, every 13th an escaped character
    key = logs_key(build_id)
    expected = []
    for start in range(0, 20_000, 1000):
        pipe = redis.pipeline(transaction=False)
        for n in range(start, start + 1000):
            text = f"{n:06d} " + "x" * 60
            if n % 7 == 0:
                text += " NeEdLe"
            if n % 11 == 0:
                text += " ✓ ünïcode"
            if n % 13 == 0:
                text += f' "{ESC}[0m\\'
            if n % 7 == 0:
                expected.append(text)
            pipe.xadd(key, {"ts": n, "source": "stdout", "phase": "build", "text": text})
        await pipe.execute()
    await archived(redis, s3, build_id)
    if archived_log:
        await redis.delete(logs_key(build_id))

    # WHEN "needle" is searched, and a regex for lines ending with an escape, and a line number
    plain = await search(redis, s3, build_id, "needle", limit=1000)
    regex = await search(redis, s3, build_id, r"\\$", regex=True, limit=1)
    one = await search(redis, s3, build_id, "019997 x")

    # THEN the totals are exact and the first page holds the first 1,000 matches
    assert plain.total == len(expected) == 2858
    assert texts(plain) == expected[:1000]
    assert plain.done is False
    assert regex.total == len(range(0, 20_000, 13))
    assert [entry.text for entry in one.matches] == [f"{19997:06d} " + "x" * 60]


async def test_an_empty_log_an_unknown_build_and_bad_arguments(redis: Redis, s3: Any, build_id: str) -> None:
    query = LogQuery.parse("x")
    # GIVEN a known build that has written nothing: no match, done
    empty = await search(redis, s3, build_id, "x")
    assert empty == SearchPage([], 0, "0-0", True)
    # AND an unknown build is a LookupError, with and without an archive bucket
    for bucket in (BUCKET, ""):
        with pytest.raises(LookupError):
            await search_logs(redis, s3, bucket, build_id, build_exists=lambda: False, query=query)
    # AND bad ids and limits are ValueErrors
    for build, after, limit in [("bad id", "0-0", 10), ("ok", "x-1", 10), ("ok", "0-0", 0), ("ok", "0-0", 1001)]:
        with pytest.raises(ValueError, match=r"."):
            await search_logs(redis, s3, BUCKET, build, build_exists=known, query=query, after=after, limit=limit)


@pytest.mark.parametrize(
    ("q", "regex", "reason"),
    [
        ("", False, "q must be 1 to 256 characters"),
        ("x" * 257, False, "q must be 1 to 256 characters"),
        ("", True, "q must be 1 to 256 characters"),
        ("a(", True, "invalid regex: missing ): a("),
        (r"(a)\1", True, "invalid regex: invalid escape sequence: \\1"),
        ("a{1001}", True, "invalid regex: invalid repetition size: {1001}"),
        ("((a{100}){100}){100}", True, "invalid regex: "),
        ("[z-a]", True, "invalid regex: invalid character class range: z-a"),
        # RE2 accepts them, but their programs send it to its NFA: ~0.3 s per 16 KiB line
        (".{1000}.{1000}$Z", True, "regex too complex: it compiles to 16006 RE2 instructions, at most 1000"),
        (r"\w{500}", True, "regex too complex: "),
        ("(?:a.{60}){5}", True, "regex too complex: "),
    ],
)
def test_bad_queries_are_invalid_with_the_reason(q: str, regex: bool, reason: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        LogQuery.parse(q, regex=regex)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(reason)


def test_the_longest_query_and_any_regex_re2_accepts_parse() -> None:
    assert LogQuery.parse("x" * 256).matches("y" + "X" * 300)
    assert LogQuery.parse("(a+)+$", regex=True).matches("a" * 50_000 + "!") is False  # linear, no blow-up


@pytest.mark.parametrize(
    "pattern",
    [r"error|warn", r"\bTS\d{4}\b", r"[a-f0-9]{40}", r"[a-f0-9]{64}", r"^\s*at .*\(.*:\d+\)$", r".{100}", r"x{900}"],
)
def test_ordinary_patterns_are_not_too_complex(pattern: str) -> None:
    assert LogQuery.parse(pattern, regex=True).regex


class SlowMatch:
    """A query whose every test takes 10 ms: a full scan of 500 lines would take 5 s."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> bool:
        self.calls += 1
        time.sleep(0.01)
        return "line" in text


@pytest.mark.parametrize("archived_log", [False, True], ids=["live", "archived"])
async def test_a_scan_stops_at_its_deadline(
    redis: Redis, s3: Any, build_id: str, archived_log: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a log of 500 lines, and a query that takes 10 ms per line
    key = logs_key(build_id)
    pipe = redis.pipeline(transaction=False)
    for n in range(500):
        pipe.xadd(key, {"ts": n, "source": "stdout", "phase": "build", "text": f"line {n}"})
    await pipe.execute()
    await archived(redis, s3, build_id)
    if archived_log:
        await redis.delete(key)
    slow = SlowMatch()
    query = LogQuery("line", True, slow)
    # WHEN the deadline is 0.2 s
    monkeypatch.setattr(search_module, "SEARCH_DEADLINE_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.raises(SearchTimeout, match=r"stopped after 0\.2 s .*narrow the query"):
        await search_logs(redis, s3, BUCKET, build_id, build_exists=known, query=query)
    # THEN the scan stopped there, long before its end
    assert time.monotonic() - started < 1.5
    assert 5 <= slow.calls < 100

"""GET /builds/{id}/logs.txt: live, archived (text object inline or 302), old archives, limits, errors."""

from typing import Any

import pytest
import requests

from buildlogs.api.text import INLINE_LIMIT_BYTES
from buildlogs.keys import archive_key, text_key
from tests.support.api import ARCHIVE, Api, archive_and_expire, spec, write_log
from tests.support.api_logs import raw_call, redis_down, write_many_lines

pytestmark = [pytest.mark.redis]

SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    ("stage", "install", {}),
    ("stdout", "added 3 packages", {}),
    ("stderr", "\x1b[33mnpm WARN\x1b[0m deprecated", {}),
    ("stdout", "\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ é ✓ <b>", {}),
    ("end_stage", "", {"exit_code": 0}),
    ("event", "end of log: SUCCEEDED", {"event": "end", "status": "SUCCEEDED"}),
]


def _submit(api: Api, build_id: str) -> None:
    assert api.call("POST", "/builds", spec(build_id=build_id)).status == 202


def _texts(api: Api, build_id: str) -> list[str]:
    body = api.call("GET", f"/builds/{build_id}/logs?limit=1000").body
    return [entry["text"] for entry in body["entries"]]


def test_a_live_log_is_every_entry_text_per_line_escapes_stripped_or_kept(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a live log with colours and an OSC hyperlink
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    texts = _texts(api, build_id)
    # WHEN its text is read stripped (the default) and kept
    plain = raw_call(f"/builds/{build_id}/logs.txt")
    kept = raw_call(f"/builds/{build_id}/logs.txt?ansi=keep")
    # THEN both hold every entry (system lines included) in order, one per line
    assert kept.status == plain.status == 200
    assert kept.text == "\n".join(texts) + "\n"
    assert plain.text.splitlines() == [
        "--- Installing dependencies ---",
        "added 3 packages",
        "npm WARN deprecated",
        "link é ✓ <b>",
        *plain.text.splitlines()[4:],
    ]
    assert "\x1b" not in plain.text
    assert plain.text.splitlines()[-1] == "end of log: SUCCEEDED"
    assert plain.header("Content-Type") == "text/plain; charset=utf-8"
    assert plain.header("Content-Disposition") == f'inline; filename="{build_id}.log"'


def test_an_archived_log_is_served_from_its_text_object_with_the_same_text(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN the text of a live log
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    live = {mode: raw_call(f"/builds/{build_id}/logs.txt?ansi={mode}").text for mode in ("strip", "keep")}
    # WHEN it is archived, its stream expires, and its NDJSON is removed (only the text objects remain)
    archive_and_expire(redis_url, api.s3, build_id)
    api.s3.delete_object(Bucket=ARCHIVE, Key=archive_key(build_id))
    # THEN the same text is served inline, from the text objects
    for mode in ("strip", "keep"):
        response = raw_call(f"/builds/{build_id}/logs.txt?ansi={mode}")
        assert (response.status, response.text) == (200, live[mode])


def test_an_old_archive_without_text_objects_is_rendered_from_its_ndjson(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN an archived log whose archive predates the text objects
    _submit(api, build_id)
    write_log(redis_url, build_id, SCRIPT)
    live = {mode: raw_call(f"/builds/{build_id}/logs.txt?ansi={mode}").text for mode in ("strip", "keep")}
    archive_and_expire(redis_url, api.s3, build_id)
    for ansi in (False, True):
        api.s3.delete_object(Bucket=ARCHIVE, Key=text_key(build_id, ansi=ansi))
    # WHEN its text is read THEN it is rendered from build.jsonl, the same as live
    for mode in ("strip", "keep"):
        response = raw_call(f"/builds/{build_id}/logs.txt?ansi={mode}")
        assert (response.status, response.text) == (200, live[mode])


def test_a_large_log_is_a_413_while_live_and_a_302_to_s3_once_archived(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a log of 60,000 coloured lines: over the inline limit as text
    _submit(api, build_id)
    write_many_lines(redis_url, build_id, 60_000, text_size=90)
    # WHEN its text is read while live THEN a 413 says why
    live = raw_call(f"/builds/{build_id}/logs.txt")
    assert live.status == 413
    assert live.json()["error"] == "log_too_large"
    assert "MiB" in live.json()["message"]
    # WHEN it is archived THEN the text is a 302 to a presigned URL of the stripped text object
    archive_and_expire(redis_url, api.s3, build_id)
    archived = raw_call(f"/builds/{build_id}/logs.txt")
    assert archived.status == 302
    location = archived.header("Location") or ""
    assert text_key(build_id) in location
    assert "Signature" in location or "X-Amz-Signature" in location
    # AND following it gives the whole text, escapes stripped
    body = requests.get(location, timeout=30)
    assert body.status_code == 200
    lines = body.text.splitlines()
    assert len(body.content) > INLINE_LIMIT_BYTES
    assert len(lines) == 60_001
    assert lines[0] == "00000000 " + "x" * 81
    assert lines[-1] == "end"


def test_a_known_build_without_lines_is_empty_and_an_unknown_one_a_404(api: Api, build_id: str) -> None:
    _submit(api, build_id)
    empty = raw_call(f"/builds/{build_id}/logs.txt")
    assert (empty.status, empty.text) == (200, "")
    unknown = raw_call(f"/builds/{build_id}-nope/logs.txt")
    assert unknown.status == 404
    assert unknown.json()["error"] == "not_found"


def test_bad_ansi_is_a_400_and_redis_down_a_503(api: Api, build_id: str) -> None:
    _submit(api, build_id)
    bad = raw_call(f"/builds/{build_id}/logs.txt?ansi=html")
    assert bad.status == 400
    assert bad.json()["error"] == "invalid_request"
    with redis_down():
        down = raw_call(f"/builds/{build_id}/logs.txt")
    assert down.status == 503
    assert down.header("Retry-After")

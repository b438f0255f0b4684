"""Every command of the CLI against the real API served on 127.0.0.1 (moto, real Redis): tail's
NDJSON is the archive's, filters, status, list and cancel."""

import io
import json
import re
from typing import Any

import pytest

from buildlogs.client.cli import main
from tests.support.api import ARCHIVE, Api, archive_and_expire, serve_api, spec, write_log

pytestmark = [pytest.mark.redis]

LOG: list[tuple[str, str, dict[str, Any]]] = [
    ("stage", "install", {}),
    ("stdout", "added 12 packages", {}),
    ("end_stage", "", {"exit_code": 0}),
    ("stage", "build", {}),
    ("stdout", "compiling [1/2] \x1b[32mok\x1b[0m", {}),
    ("stderr", "error TS2304: Cannot find name 'x'", {}),
    ("event", "BUILD FAILED: command exited with code 2", {"event": "build_failed"}),
    ("end_stage", "", {"exit_code": 2}),
]


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


def test_tail_json_prints_exactly_the_archived_records(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a build whose log was archived and whose stream expired
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, LOG)
    archive_and_expire(redis_url, api.s3, build_id, "FAILED")
    archived = api.s3.get_object(Bucket=ARCHIVE, Key=f"build-logs/{build_id}/build.jsonl")["Body"].read()
    with serve_api() as url:
        # WHEN tail --json follows it (served from the archive)
        code, out = cli("tail", build_id, "--json", "--api", url)
    # THEN stdout is the archive's NDJSON, record for record, and the exit code is FAILED's
    assert code == 1
    assert [json.loads(line) for line in out.splitlines()] == [json.loads(line) for line in archived.splitlines()]


def test_tail_filters_by_stage_and_source(api: Api, redis_url: str, build_id: str) -> None:
    # GIVEN a build that ended FAILED
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, [*LOG, ("event", "end of log: FAILED", {"event": "end", "status": "FAILED"})])
    with serve_api() as url:
        # WHEN tail shows only the build stage's stderr, with timestamps
        code, out = cli("--api", url, "tail", build_id, "--phase", "build", "--source", "stderr", "--timestamps")
    # THEN only that line, stamped; the exit code comes from the API's status (the end entry is filtered out)
    log, _summary = out.split("\n\n", 1)
    (line,) = log.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} \[      build\] ! error TS2304: Cannot find name 'x'", line)
    # moto's pass machine is still RUNNING: a status that is not a result counts as a failure
    assert code == 1


def test_status_summarises_the_stages_from_the_log(api: Api, redis_url: str, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, LOG)
    with serve_api() as url:
        code, out = cli("status", build_id, "--api", url)
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    assert code == 0  # still RUNNING
    assert any(row[:2] == ["install", "✓ succeeded"] and row[-1] == "0" for row in rows)
    assert any(row[:2] == ["build", "✗ failed"] and row[-1] == "2" for row in rows)
    assert ["result", build_id, "RUNNING"] in rows


def test_list_then_cancel_then_status(api: Api, build_id: str) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    with serve_api() as url:
        code, out = cli("list", "--api", url)
        assert code == 0
        assert any(line.split()[:2] == [build_id, "RUNNING"] for line in out.splitlines())
        assert cli("cancel", build_id, "--api", url) == (0, f"{build_id}: ABORTING\n")
        code, out = cli("status", build_id, "--json", "--api", url)
        assert json.loads(out)["status"] == "ABORTED"
        assert code == 2
        # a second cancel: the build is no longer running
        assert cli("cancel", build_id, "--api", url)[0] == 3


def test_a_rejected_spec_exits_3_with_the_api_reason(
    api: Api, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"start": "x", "port": 0, "files": {"../escape": ""}}))
    with serve_api() as url:
        code, out = cli("submit", str(path), "--api", url)
    err = capsys.readouterr().err.splitlines()
    assert code == 3
    assert out == ""
    assert err[0].startswith("buildlogs: HTTP 400: ")
    text = "\n".join(err)
    assert "'../escape'" in text
    # every reason the API gives is printed: listed one per line, or counted in its message
    assert "port" in text or "(and 1 more)" in err[0]
    assert "Traceback" not in text


def test_status_of_an_aborted_build_shows_the_stage_it_stopped_in_as_interrupted(
    api: Api, redis_url: str, build_id: str
) -> None:
    # GIVEN a build cancelled while its build stage ran: the archiver closes its log with
    # "BUILD ABORTED" on that stage, archives it, and the stream expires
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, [*LOG[:3], ("stage", "build", {}), ("stdout", "compiling", {})])
    with serve_api() as url:
        assert cli("cancel", build_id, "--api", url)[0] == 0
        archive_and_expire(redis_url, api.s3, build_id, "ABORTED")
        # WHEN its status is shown
        code, out = cli("status", build_id, "--api", url)
    # THEN the build stage reads interrupted (it did not fail), the install stage succeeded
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    assert code == 2
    assert any(row[:2] == ["build", "■ interrupted"] for row in rows), out
    assert any(row[:2] == ["install", "✓ succeeded"] for row in rows), out
    assert ["result", build_id, "ABORTED"] in rows

"""The client CLI against a local API served by the tests (localhost: unsigned), moto and real Redis."""

import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from buildlogs.cli import main
from buildlogs.settings import get_settings
from buildlogs.streamer import LogStreamer
from tests.integration.test_api_support import Api, api, serve_api, spec, write_log

pytestmark = [pytest.mark.redis]
__all__ = ["api"]  # the fixture, used by name


def _log(status: str) -> list:
    return [
        ("stage", "build", {}),
        ("stdout", "compiling", {}),
        ("stderr", "warning: slow", {}),
        ("end_stage", "", {"exit_code": 0}),
        ("event", f"end of log: {status}", {"event": "end", "status": status}),
    ]


def test_submit_prints_the_build_id_and_its_urls(api: Api, tmp_path: Path, build_id: str) -> None:
    # GIVEN a spec file
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(build_id=build_id)))
    out = io.StringIO()
    with serve_api() as url:
        # WHEN it is submitted with the CLI
        code = main(["--api", url, "submit", str(path)], out=out)
    # THEN it exits 0 printing the id and absolute URLs, and the build runs
    assert code == 0
    assert out.getvalue().splitlines() == [
        build_id,
        f"status: {url}/builds/{build_id}",
        f"logs:   {url}/builds/{build_id}/logs",
    ]
    assert api.call("GET", f"/builds/{build_id}").body["status"] == "RUNNING"


@pytest.mark.parametrize(("status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("TIMED_OUT", 2), ("ABORTED", 2)])
def test_tail_prints_the_log_and_exits_with_the_build_result(
    api: Api, redis_url: str, build_id: str, status: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a build whose log ended with ``status``
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, _log(status))
    out = io.StringIO()
    with serve_api() as url:
        monkeypatch.setenv("BUILDLOGS_API_URL", url)  # the setting, not --api
        get_settings.cache_clear()
        # WHEN tail follows it
        exit_code = main(["tail", build_id], out=out)
    # THEN every line is printed (uncoloured off a terminal) and the exit code is the result's
    assert exit_code == code
    lines = out.getvalue().splitlines()
    assert lines[1:3] == ["[      build]   compiling", "[      build] ! warning: slow"]
    assert lines[-1] == f"[      build] # end of log: {status}"


def test_tail_colours_lines_when_forced(
    api: Api, redis_url: str, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.call("POST", "/builds", spec(build_id=build_id))
    write_log(redis_url, build_id, _log("SUCCEEDED"))
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    with serve_api() as url:
        assert main(["--api", url, "tail", build_id], out=out) == 0
    assert "\033[31m! warning: slow" in out.getvalue()


async def test_tail_follows_a_live_build_with_long_polls(api: Api, redis: Redis, build_id: str) -> None:
    # GIVEN tail started before the build writes anything
    api.call("POST", "/builds", spec(build_id=build_id))
    out = io.StringIO()
    with serve_api() as url:
        started = time.monotonic()
        tail = asyncio.create_task(asyncio.to_thread(main, ["--api", url, "tail", build_id], out=out))
        # WHEN the build writes its log while tail waits
        deadline = time.monotonic() + 10
        while not any(c.get("cmd") == "xread" for c in await redis.client_list()):
            assert time.monotonic() < deadline, "tail never long-polled"
        streamer = LogStreamer(redis, build_id, "build", flush_interval_ms=0)
        await streamer.stage("build")
        await streamer.on_stdout("hello from the build\n")
        await streamer.write_event("end of log: FAILED", event="end", status="FAILED")
        await streamer.close()
        code = await asyncio.wait_for(tail, timeout=20)
    # THEN tail printed the lines as they came and exited with FAILED's code, well before a 20 s wait
    assert code == 1
    assert "[      build]   hello from the build" in out.getvalue().splitlines()
    assert time.monotonic() - started < 15


def test_tail_of_an_unknown_build_exits_3(api: Api, build_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_api() as url:
        assert main(["--api", url, "tail", build_id]) == 3
    assert f"HTTP 404: no build {build_id}" in capsys.readouterr().err

"""`buildlogs run` and `buildlogs tail` for real: the CLI over the local stack, Ctrl-C included."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any

import redis as sync_redis

from buildlogs.client.cli import LocalRun, main
from buildlogs.client.local_run import LocalRunConfig, LocalStack
from buildlogs.client.project import load_spec
from buildlogs.keys import logs_key
from tests.support.local_run import FAST_RETRIES, build_id_in, example, stages_started, stream_records, texts
from tests.support.sandbox import free_port

# What `buildlogs run --json` may print on stderr: its notices, never a function's log line.
RUN_NOTICES = ("build ", "follow from another terminal: ", "or in a browser: ", "archive: ")


def write_spec(tmp_path: Path, name: str, **changes: Any) -> Path:
    """An example as one SPEC.json on a free port (what `buildlogs submit` and `run` accept)."""
    path = tmp_path / f"{name}.json"
    path.write_text(example(name, **changes).model_dump_json(exclude_none=True))
    return path


def run_cli(args: list[str], tmp_path: Path, definition_cache: Path) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    config = partial(LocalRunConfig, workdir=tmp_path / ".buildlogs", cache_dir=definition_cache, context=FAST_RETRIES)
    code = main(args, out=out, err=err, local=LocalRun(load_spec, config, LocalStack))
    return code, out.getvalue(), err.getvalue()


def archived(tmp_path: Path, build_id: str) -> list[dict[str, Any]]:
    path = tmp_path / ".buildlogs" / "archive" / "build-logs" / build_id / "build.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


class TimedOutput(StringIO):
    """Captured output that remembers when a text first appeared in it."""

    def __init__(self, *watched: str) -> None:
        super().__init__()
        self.watched = watched
        self.first_seen: dict[str, float] = {}

    def write(self, text: str) -> int:
        written = super().write(text)
        for marker in self.watched:
            if marker not in self.first_seen and marker in self.getvalue():
                self.first_seen[marker] = time.monotonic()
        return written


def test_run_prints_exactly_the_archived_entries_and_exits_0(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: Any
) -> None:
    # GIVEN the default example as a spec file, and the real Redis
    monkeypatch.setenv("REDIS_URL", redis_url)
    spec = write_spec(tmp_path, "hello-web")
    # WHEN `buildlogs run SPEC.json --json` builds it
    code, out, err = run_cli(["run", str(spec), "--json"], tmp_path, definition_cache)
    # THEN it exits 0 and its stdout is the archive, line for line, which is the stream
    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    build_id = build_id_in(err)
    assert printed == archived(tmp_path, build_id) == stream_records(redis_url, build_id)
    assert (printed[-1]["event"], printed[-1]["status"]) == ("end", "SUCCEEDED")


def test_run_of_a_failing_project_exits_1_with_its_last_stderr_line_printed(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: Any
) -> None:
    # GIVEN the broken example as a project directory (its buildspec.json and files)
    monkeypatch.setenv("REDIS_URL", redis_url)
    project = tmp_path / "broken-build"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "broken-build", project)
    (project / "buildspec.json").write_text(
        json.dumps({**json.loads((project / "buildspec.json").read_text()), "port": free_port()})
    )
    # WHEN `buildlogs run PROJECT_DIR` builds it (plain output: not a terminal)
    code, out, err = run_cli(["run", str(project)], tmp_path, definition_cache)
    # THEN it exits 1; the compiler's last line, the failed stage and the summary are shown
    assert code == 1, err
    assert "[      build] ! 1 error generated." in out
    assert "✗ build finished" in out
    assert "FAILED" in out.split("result", 1)[1]
    assert "cleanup" in out


def test_run_json_of_a_failing_build_prints_exactly_the_archive_and_exits_1(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: Any
) -> None:
    # GIVEN the broken example (its build step reports a compiler error on stderr) as a spec file
    monkeypatch.setenv("REDIS_URL", redis_url)
    spec = write_spec(tmp_path, "broken-build")
    # WHEN `buildlogs run SPEC.json --json` builds it
    code, out, err = run_cli(["run", str(spec), "--json"], tmp_path, definition_cache)
    # THEN it exits 1, and its stdout is the archive, which is the stream
    assert code == 1, err
    printed = [json.loads(line) for line in out.splitlines()]
    build_id = build_id_in(err)
    assert printed == archived(tmp_path, build_id) == stream_records(redis_url, build_id)
    # AND the compiler's last stderr line is there, Cleanup ran, and the log ends FAILED
    assert texts(printed, source="stderr", phase="build")[-1] == "1 error generated."
    assert stages_started(printed)[-1] == "cleanup"
    assert (printed[-1]["event"], printed[-1]["status"]) == ("end", "FAILED")


def test_run_of_a_spec_whose_build_id_already_has_a_log_exits_3_without_replaying_it(
    tmp_path: Path, redis_url: str, definition_cache: Path, monkeypatch: Any, build_id: str
) -> None:
    # GIVEN a SPEC.json with a client-chosen build_id whose log is in Redis (an earlier run of it)
    monkeypatch.setenv("REDIS_URL", redis_url)
    spec = write_spec(tmp_path, "hello-web", build_id=build_id)
    with sync_redis.Redis.from_url(redis_url) as rds:
        rds.xadd(logs_key(build_id), {"ts": "1", "source": "system", "phase": "provision", "text": "old"})
    try:
        # WHEN `buildlogs run SPEC.json --json` runs it again
        code, out, err = run_cli(["run", str(spec), "--json"], tmp_path, definition_cache)
    finally:
        with sync_redis.Redis.from_url(redis_url) as rds:
            rds.delete(logs_key(build_id))
    # THEN it exits 3 with the reason (the id and the Redis), prints no entry and no traceback
    assert code == 3
    assert f"build {build_id} already has a log in Redis at {redis_url}" in err
    assert out == ""
    assert "Traceback" not in err


def test_tail_started_while_the_build_runs_receives_exactly_the_archived_lines(stack: LocalStack) -> None:
    # GIVEN a build whose build step prints a line every 0.1 s for about a second
    lines = "python3 -u -c \"import time; [(print(f'line {i}'), time.sleep(0.1)) for i in range(10)]\""
    build = f"{lines} && python3 -u build.py"  # then the example's own build (it writes index.html)
    build_id = stack.submit(example("hello-web", build=build))
    # WHEN `buildlogs tail ID --api URL --json` follows it from another thread while it runs
    out, err, codes = TimedOutput('"line 0"'), StringIO(), []
    args = ["tail", build_id, "--api", stack.api_url, "--json"]
    tail = threading.Thread(target=lambda: codes.append(main(args, out=out, err=err)), daemon=True)
    tail.start()
    status = stack.wait(build_id)
    ended = time.monotonic()
    tail.join(60)
    # THEN tail saw the build's lines live (before the execution ended), exits 0, and printed the archive exactly
    assert status == "SUCCEEDED"
    assert not tail.is_alive()
    assert codes == [0], err.getvalue()
    assert out.first_seen['"line 0"'] < ended
    records = [json.loads(line) for line in stack.archive_path(build_id).read_text().splitlines()]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == records
    assert texts(records, source="stdout", phase="build")[:10] == [f"line {i}" for i in range(10)]


def test_tail_against_the_local_api_receives_exactly_the_archived_lines(stack: LocalStack) -> None:
    # GIVEN a build run on the local stack
    build_id = stack.submit(example("hello-web"))
    assert stack.wait(build_id) == "SUCCEEDED"
    # WHEN `buildlogs tail ID --api URL --json` follows it (from the start)
    out, err = StringIO(), StringIO()
    code = main(["tail", build_id, "--api", stack.api_url, "--json"], out=out, err=err)
    # THEN it exits 0 with exactly the archived entries
    assert code == 0, err.getvalue()
    records = [json.loads(line) for line in stack.archive_path(build_id).read_text().splitlines()]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == records


def test_ctrl_c_cancels_the_build_archives_its_partial_log_and_exits_130(
    tmp_path: Path, redis_url: str, definition_cache: Path
) -> None:
    # GIVEN `buildlogs run` in its own process on a build that hangs in its build step
    spec = write_spec(tmp_path, "hello-web", build="python3 -u -c \"print('compiling'); import time; time.sleep(120)\"")
    shutil.copytree(definition_cache, tmp_path / ".buildlogs" / "cache")  # no 10 s synth in the child
    env = {**os.environ, "REDIS_URL": redis_url, "NO_COLOR": "1"}
    cli = [sys.executable, "-m", "buildlogs.client.cli", "run", str(spec), "--json"]
    child = subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[dict[str, Any]] = []
    for line in child.stdout:  # the build's entries, live
        lines.append(json.loads(line))
        if lines[-1]["text"] == "compiling":
            break
    # WHEN the user presses Ctrl-C
    interrupted = time.monotonic()
    child.send_signal(signal.SIGINT)
    rest, err = child.communicate(timeout=60)
    # THEN it exits 130 without a traceback, soon, and the partial log is archived as ABORTED
    assert child.returncode == 130, err
    assert time.monotonic() - interrupted < 30
    assert "Traceback" not in err
    # (nor any function's log line, such as the late stage's "the log ... has ended": only notices)
    assert [line for line in err.splitlines() if not line.startswith((*RUN_NOTICES, "interrupted: "))] == []
    printed = lines + [json.loads(line) for line in rest.splitlines()]
    build_id = build_id_in(err)
    assert printed == archived(tmp_path, build_id)
    assert (printed[-1]["event"], printed[-1]["status"]) == ("end", "ABORTED")


# Run in the child process: the first batch holding "lost-line" fails as if Redis dropped the
# connection (the writer drops it, logs a warning, reports the loss later), and a function logs a
# warning through a plain stdlib logger. Neither may reach the terminal.
FLAKY_REDIS_RUN = """
import logging, sys
from redis.exceptions import ConnectionError as RedisConnectionError
from buildlogs.stream import writer

pipeline, failed = writer.StreamWriter._pipeline, []

async def flaky(self, batch):
    if not failed and any(entry.get("text") == "lost-line" for entry in batch):
        failed.append(True)
        logging.getLogger("buildlogs.injected").warning("a function's stdlib warning")
        raise RedisConnectionError("injected: Redis dropped the connection")
    await pipeline(self, batch)

writer.StreamWriter._pipeline = flaky
from buildlogs.client.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_run_json_shows_no_function_log_line_when_redis_drops_writes(
    tmp_path: Path, redis_url: str, definition_cache: Path
) -> None:
    # GIVEN `buildlogs run --json` in its own process (real stdout/stderr), whose stage loses one Redis write
    spec = write_spec(tmp_path, "hello-web", build="echo lost-line; python3 -u build.py")
    shutil.copytree(definition_cache, tmp_path / ".buildlogs" / "cache")  # no 10 s synth in the child
    env = {**os.environ, "REDIS_URL": redis_url, "NO_COLOR": "1"}
    cli = [sys.executable, "-c", FLAKY_REDIS_RUN, "run", str(spec), "--json"]
    # WHEN it builds
    child = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    # THEN it succeeds; stdout is the entries only (the archive, with the loss reported in it)
    assert child.returncode == 0, child.stderr
    printed = [json.loads(line) for line in child.stdout.splitlines()]
    build_id = build_id_in(child.stderr)
    assert printed == archived(tmp_path, build_id)
    assert [r["reason"] for r in printed if r.get("event") == "truncated"] == ["redis_unavailable"]
    assert "lost-line" not in texts(printed)
    # AND stderr holds the run's notices only: the functions' warnings went to their log file
    assert [line for line in child.stderr.splitlines() if not line.startswith(RUN_NOTICES)] == []
    functions_log = (tmp_path / ".buildlogs" / "functions.log").read_text()
    assert f"redis unavailable for {build_id}, dropping lines" in functions_log
    assert "a function's stdlib warning" in functions_log

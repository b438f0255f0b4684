"""`buildlogs run` and `buildlogs tail` for real: the CLI over the local stack, Ctrl-C included."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any

from buildlogs.client.cli import LocalRun, main
from buildlogs.client.local_run import LocalRunConfig, LocalStack
from buildlogs.client.project import load_spec
from tests.support.local_run import FAST_RETRIES, build_id_in, example, stream_records
from tests.support.sandbox import free_port


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
    printed = lines + [json.loads(line) for line in rest.splitlines()]
    build_id = build_id_in(err)
    assert printed == archived(tmp_path, build_id)
    assert (printed[-1]["event"], printed[-1]["status"]) == ("end", "ABORTED")

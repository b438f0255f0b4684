"""Each stage through the stage Lambda handler, with the local sandbox runtime and a real Redis."""

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from buildlogs.client.local_api import LocalLambdaContext
from buildlogs.errors import CommandFailed, InvalidInput, SandboxUnavailable
from buildlogs.keys import logs_key, meta_key
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.sandbox import LocalSandboxRuntime
from buildlogs.pipeline.spec_store import LocalSpecStore
from buildlogs.settings import get_settings
from functions.stage.handler import lambda_handler
from tests.support.sandbox import free_port

SERVER = (
    "import http.server, os\n"
    "http.server.test(http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']), bind='127.0.0.1')\n"
)
SECRET = "s3cr3t-token-value"


Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture
def rds(redis_url: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def invoke(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """Call the handler as the stage Lambda named ``stage`` would be called (its STAGE env)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SANDBOX_RUNTIME", "local")
    monkeypatch.setenv("LOG_FLUSH_INTERVAL_MS", "1")
    sandboxes: list[str] = []

    def call(stage: str, event: dict[str, Any]) -> dict[str, Any]:
        monkeypatch.setenv("STAGE", stage)
        get_settings.cache_clear()
        result = lambda_handler(event, LocalLambdaContext("buildlogs-stage"))  # type: ignore[arg-type]
        if result.get("sandbox_id"):
            sandboxes.append(result["sandbox_id"])
        return result

    yield call
    for sandbox_id in sandboxes:  # never leave a dev server behind
        import asyncio

        asyncio.run(LocalSandboxRuntime(sandbox_id=sandbox_id).kill())


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hello-web"


def load_example() -> dict[str, Any]:
    """examples/hello-web as a BuildSpec body: its buildspec.json plus its files."""
    body: dict[str, Any] = json.loads((EXAMPLE / "buildspec.json").read_text())
    body["files"] = {
        str(path.relative_to(EXAMPLE)): path.read_text()
        for path in sorted(EXAMPLE.rglob("*"))
        if path.is_file() and path.name not in ("buildspec.json", "README.md")
    }
    return body


def make_state(tmp_path: Path, build_id: str, **spec: Any) -> dict[str, Any]:
    ref = LocalSpecStore(tmp_path / "specs").save(build_id, BuildSpec.model_validate(spec))
    return {"build_id": build_id, "spec_ref": ref}


def entries(rds: sync_redis.Redis, build_id: str) -> list[dict[str, str]]:
    return [fields for _id, fields in rds.xrange(logs_key(build_id))]


def of_phase(items: list[dict[str, str]], phase: str) -> list[dict[str, str]]:
    return [e for e in items if e["phase"] == phase]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_build_streams_every_stage_and_cleanup_removes_the_sandbox(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN a small web project whose install prints to both streams (and a secret)
    port = free_port()
    state = make_state(
        tmp_path,
        build_id,
        files={"server.py": SERVER, "index.html": "<h1>hi</h1>", "public/app.js": "console.log(1)"},
        install="echo resolving; echo 'warn: deprecated' >&2; echo token=$API_TOKEN; printf 'installed'",
        start="python3 -u server.py",
        port=port,
        healthcheck_path="/index.html",
        env={"API_TOKEN": SECRET},
        timeouts={"start": 20, "healthcheck": 10},
    )
    # WHEN every stage of the happy path runs in order, each on the previous one's output
    for stage in ("provision", "scaffold", "install", "build", "start", "healthcheck"):
        state = invoke(stage, state)
    # THEN the state stays small and carries the sandbox and the preview URL
    assert set(state) == {"build_id", "spec_ref", "sandbox_id", "preview_url"}
    assert state["preview_url"] == f"http://127.0.0.1:{port}"
    assert rds.hget(meta_key(build_id), "sandbox_id") == state["sandbox_id"]
    log = entries(rds, build_id)
    # each stage opened and closed with exit code 0, in pipeline order
    events = [(e["phase"], e.get("event")) for e in log if e.get("event") in ("stage_start", "stage_end")]
    stages = ["provision", "scaffold", "install", "build", "start", "healthcheck"]
    assert events == [(s, ev) for s in stages for ev in ("stage_start", "stage_end")]
    assert all(e["exit_code"] == "0" for e in log if e.get("event") == "stage_end")
    assert log[0]["text"] == "--- Provisioning sandbox ---"
    # the install's lines, in order and tagged by source, the secret masked, the last partial line kept
    install = of_phase(log, "install")
    assert [e["text"] for e in install if e["source"] == "stdout"] == ["resolving", "token=***", "installed"]
    assert [e["text"] for e in install if e["source"] == "stderr"] == ["warn: deprecated"]
    assert SECRET not in str(log)
    # scaffold listed the files, build was skipped with a line, healthcheck logged the status
    assert "  + public/app.js (14 bytes)" in [e["text"] for e in of_phase(log, "scaffold")]
    assert "No build command: skipped" in [e["text"] for e in of_phase(log, "build")]
    assert [e["preview_url"] for e in of_phase(log, "start") if "preview_url" in e] == [state["preview_url"]]
    assert any(e["text"].startswith("GET /index.html -> 200 OK") for e in of_phase(log, "healthcheck"))
    assert not any(e.get("event") == "build_failed" for e in log)
    with urllib.request.urlopen(f"{state['preview_url']}/index.html", timeout=5) as response:
        assert response.read() == b"<h1>hi</h1>"

    # WHEN cleanup runs THEN the sandbox and its dev server are gone
    sandbox = LocalSandboxRuntime(sandbox_id=state["sandbox_id"])
    assert Path(sandbox.directory).is_dir()
    invoke("cleanup", {**state, "error": {"Error": "States.Timeout", "Cause": "a test"}})
    assert not Path(sandbox.directory).exists()
    assert not port_open(port)
    cleanup = of_phase(entries(rds, build_id), "cleanup")
    assert cleanup[0]["event"] == "stage_start"
    assert f"Sandbox {state['sandbox_id']} killed" in [e["text"] for e in cleanup]


def test_a_failing_command_fails_its_stage_with_its_last_line_and_build_failed(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN an install command that fails after printing
    state = make_state(
        tmp_path, build_id, install="echo step 1; echo 'npm ERR! missing script' >&2; exit 3", start="true", port=3000
    )
    state = invoke("scaffold", invoke("provision", state))
    # WHEN install runs THEN it raises CommandFailed (the error name Step Functions catches)
    with pytest.raises(CommandFailed, match="install command exited with code 3") as failure:
        invoke("install", state)
    assert type(failure.value).__name__ == "CommandFailed"
    install = of_phase(entries(rds, build_id), "install")
    texts = [e["text"] for e in install]
    # the failing command's last line is there, tagged stderr, before BUILD FAILED and stage_end
    last_output = [e for e in install if e["source"] != "system"][-1]
    assert last_output == {**last_output, "source": "stderr", "text": "npm ERR! missing script"}
    failed = [e for e in install if e.get("event") == "build_failed"]
    assert len(failed) == 1
    assert failed[0]["text"].startswith("BUILD FAILED: install command exited with code 3")
    assert install[-1]["event"] == "stage_end"
    assert install[-1]["exit_code"] == "3"
    assert texts.index("npm ERR! missing script") < texts.index(failed[0]["text"])
    # WHEN cleanup runs after the Catch THEN it does not report the failure twice
    invoke("cleanup", {**state, "error": {"Error": "CommandFailed", "Cause": "..."}})
    assert len([e for e in entries(rds, build_id) if e.get("event") == "build_failed"]) == 1
    assert not Path(LocalSandboxRuntime(sandbox_id=state["sandbox_id"]).directory).exists()


def test_a_command_that_never_ends_is_killed_at_its_timeout(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    state = make_state(
        tmp_path, build_id, build="echo compiling; exec sleep 600", start="true", port=3000, timeouts={"build": 1}
    )
    state = invoke("provision", state)
    with pytest.raises(CommandFailed, match="build command timed out after 1s"):
        invoke("build", state)
    build = of_phase(entries(rds, build_id), "build")
    assert "compiling" in [e["text"] for e in build]
    assert build[-1]["event"] == "stage_end"
    assert build[-1]["exit_code"] == "124"


def test_a_dev_server_that_never_opens_its_port_fails_start_clearly(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    port = free_port()
    state = make_state(tmp_path, build_id, start="echo booting; exec sleep 600", port=port, timeouts={"start": 1})
    state = invoke("provision", state)
    with pytest.raises(CommandFailed, match=f"did not open port {port} within 1s"):
        invoke("start", state)
    start = of_phase(entries(rds, build_id), "start")
    assert [e["text"] for e in start if e.get("event") == "build_failed"] == [
        f"BUILD FAILED: the dev server did not open port {port} within 1s"
    ]


def test_cleanup_reports_a_failure_no_stage_could_report(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN a run whose stage Lambda timed out (it wrote nothing) and never got a sandbox
    state = make_state(tmp_path, build_id, start="true", port=3000)
    # WHEN cleanup runs with the Catch's error
    invoke("cleanup", {**state, "error": {"Error": "States.Timeout", "Cause": "Task timed out"}})
    # THEN the stream says why the build failed
    log = entries(rds, build_id)
    assert [e["text"] for e in log if e.get("event") == "build_failed"] == [
        "BUILD FAILED: States.Timeout: Task timed out"
    ]
    assert "No sandbox to clean up" in [e["text"] for e in log]


def test_a_vanished_sandbox_is_retryable_and_not_yet_a_build_failure(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    state = {**make_state(tmp_path, build_id, start="true", port=3000), "sandbox_id": f"local-gone-{uuid.uuid4().hex}"}
    with pytest.raises(SandboxUnavailable, match="no longer exists"):
        invoke("scaffold", state)
    log = entries(rds, build_id)
    assert any(e["text"].startswith("Sandbox unavailable:") for e in log)
    assert not any(e.get("event") == "build_failed" for e in log)


def test_invalid_input_is_rejected_before_anything_is_written(
    invoke: Invoke, rds: sync_redis.Redis, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="build_id"):
        invoke("provision", {"build_id": "../../etc", "spec_ref": "file:///x"})
    with pytest.raises(InvalidInput, match="sandbox_id"):
        invoke("install", {"build_id": "b-1", "spec_ref": "file:///x"})


def test_a_spec_ref_of_another_build_is_refused(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    other = make_state(tmp_path, "someone-else", start="true", port=3000)
    with pytest.raises(InvalidInput, match="spec_ref must be"):
        invoke("provision", {"build_id": build_id, "spec_ref": other["spec_ref"]})
    assert [e.get("event") for e in entries(rds, build_id)] == ["stage_start", "build_failed", "stage_end"]


def test_the_example_project_builds_and_serves(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN examples/hello-web on a free port
    body = {**load_example(), "port": free_port(), "timeouts": {"start": 20, "healthcheck": 10}}
    state = make_state(tmp_path, build_id, **body)
    # WHEN the whole happy path runs
    for stage in ("provision", "scaffold", "install", "build", "start", "healthcheck"):
        state = invoke(stage, state)
    # THEN the build's output is in the stream and the built page is served
    build = of_phase(entries(rds, build_id), "build")
    assert [e["text"] for e in build if e["source"] == "stdout"] == ["emitted dist/index.html", "build complete"]
    assert [e["text"] for e in build if e["source"] == "stderr"] == ["warning: no minifier configured"]
    with urllib.request.urlopen(f"{state['preview_url']}/index.html", timeout=5) as response:
        assert b"Hello from a buildlogs sandbox" in response.read()
    invoke("cleanup", state)


def test_a_health_check_answered_with_a_4xx_fails_the_build_at_once(
    invoke: Invoke, rds: sync_redis.Redis, build_id: str, tmp_path: Path
) -> None:
    # GIVEN the example served, but a health check path it does not serve
    body = {**load_example(), "port": free_port(), "healthcheck_path": "/missing", "timeouts": {"healthcheck": 10}}
    state = make_state(tmp_path, build_id, **body)
    for stage in ("provision", "scaffold", "install", "build", "start"):
        state = invoke(stage, state)
    # WHEN the health check runs
    started = time.monotonic()
    with pytest.raises(CommandFailed, match=r"health check GET /missing answered 404"):
        invoke("healthcheck", state)
    # THEN it failed on the first answer (a 4xx is not retried), with the answer in the log
    assert time.monotonic() - started < 5
    health = of_phase(entries(rds, build_id), "healthcheck")
    assert any(e["text"].startswith("GET /missing -> 404") for e in health)
    assert any(e.get("event") == "build_failed" for e in health)
    invoke("cleanup", state)


def test_a_redis_outage_never_fails_a_stage(
    invoke: Invoke, tmp_path: Path, build_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a build whose Redis does not answer at all
    state = make_state(tmp_path, build_id, files={"a.txt": "x"}, install="echo hi; echo warn >&2", start="true", port=1)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    # WHEN provision, scaffold and install run
    for stage in ("provision", "scaffold", "install"):
        state = invoke(stage, state)
    # THEN every stage succeeds: the log lines are lost, the build is not
    assert state["sandbox_id"].startswith("local-")
    assert (Path(LocalSandboxRuntime(sandbox_id=state["sandbox_id"]).workspace) / "a.txt").read_text() == "x"

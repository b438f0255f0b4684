"""Iteration builds through the deployed state machine on one machine (issue 12): the earlier build's
sandbox is reused, only what changed is done, and each build keeps its own stream and archive."""

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from buildlogs.client.local_run import LocalStack
from buildlogs.keys import logs_key
from buildlogs.pipeline import lifetime
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.sandbox.local import LocalSandboxRuntime
from buildlogs.pipeline.stages import PIPELINE
from tests.support.local_run import (
    archive_records,
    example,
    fetch_text,
    get_json,
    post_build,
    stages_started,
    stream_records,
    texts,
)

SKIPPED_LINE = "--- Installing dependencies: skipped (no manifest changed) ---"
NEW_PAGE = "<!doctype html>\n<title>hello-web</title>\n<h1>Changed in an iteration</h1>\n"


def first_build(stack: LocalStack, **changes: Any) -> tuple[str, str, str]:
    """A succeeded build of the default example: its id, sandbox id and preview URL."""
    build_id = stack.submit(example("hello-web", **changes))
    assert stack.wait(build_id) == "SUCCEEDED"
    output = stack.describe(build_id)["output"]
    status = get_json(f"{stack.api_url}builds/{build_id}")
    assert status["sandbox_id"]
    assert status["preview_url"]
    assert output is not None
    return build_id, str(status["sandbox_id"]), str(status["preview_url"])


def iterate(stack: LocalStack, earlier: str, **changes: Any) -> str:
    """Submit an iteration through the local API (only the fields given are sent) and wait for it."""
    build_id = stack.submit(BuildSpec(iterate_from=earlier, **changes))
    stack.wait(build_id)
    return build_id


def workspace(sandbox_id: str) -> Path:
    return Path(LocalSandboxRuntime(sandbox_id=sandbox_id).workspace)


def stage_end(records: list[dict[str, Any]], phase: str) -> dict[str, Any]:
    return next(r for r in records if r.get("event") == "stage_end" and r["phase"] == phase)


def test_an_iteration_reuses_the_sandbox_skips_install_and_serves_the_change(stack: LocalStack, redis_url: str) -> None:
    # GIVEN a succeeded build of the default example
    first, sandbox_id, preview = first_build(stack)
    # WHEN an iteration changes one source file
    build_id = iterate(stack, first, files={"public/index.html": NEW_PAGE})
    # THEN it succeeds through every stage of the same state machine, in the same sandbox
    assert stack.describe(build_id)["status"] == "SUCCEEDED"
    streamed = stream_records(redis_url, build_id)
    assert stages_started(streamed) == [stage.name for stage in PIPELINE]
    assert f"Reconnected to sandbox {sandbox_id} of build {first}" in texts(streamed, phase="provision")[1]
    # AND Scaffold wrote only the changed file, Install was skipped and says so
    scaffold = texts(streamed, phase="scaffold", source="system")
    assert f"  ~ public/index.html ({len(NEW_PAGE)} bytes)" in scaffold
    assert any(t.startswith("Iteration: wrote 1 changed files, deleted 0 (") for t in scaffold)
    assert SKIPPED_LINE in texts(streamed, phase="install")
    assert not texts(streamed, phase="install", source="stdout")
    assert stage_end(streamed, "install")["skipped"] == "true"
    # AND the dev server was restarted and the preview serves the new content
    assert any(t.startswith("Stopping the dev server of build " + first) for t in texts(streamed, phase="start"))
    status = get_json(f"{stack.api_url}builds/{build_id}")
    assert status["preview_url"] == preview
    assert fetch_text(f"{preview}/index.html") == NEW_PAGE
    # AND GET /builds/{id} says what it iterated from, its sandbox and until when it is kept
    assert (status["iterate_from"], status["sandbox_id"]) == (first, sandbox_id)
    assert status["sandbox_expires_at"]
    assert {s["name"]: s["status"] for s in status["stages"]}["install"] == "skipped"
    # AND each build's stream and archive hold only its own lines (one end entry each)
    for build in (first, build_id):
        records = stream_records(redis_url, build)
        assert archive_records(stack, build) == records
        assert sum(1 for r in records if r.get("event") == "end") == 1
        assert stages_started(records) == [stage.name for stage in PIPELINE]
    assert not any("Reconnected" in t for t in texts(stream_records(redis_url, first)))


def test_a_manifest_change_runs_install_deleted_paths_go_and_two_iterations_in_a_row_succeed(
    stack: LocalStack, redis_url: str
) -> None:
    # GIVEN a succeeded build
    first, sandbox_id, preview = first_build(stack)
    assert (workspace(sandbox_id) / "README.md").is_file()
    # WHEN an iteration adds a dependency manifest and deletes a file
    second = iterate(stack, first, files={"requirements.txt": "# no dependencies\n"}, deleted=["README.md"])
    # THEN Install runs, saying why, and the deleted path is gone from the sandbox
    assert stack.describe(second)["status"] == "SUCCEEDED"
    streamed = stream_records(redis_url, second)
    assert "Installing again: requirements.txt changed" in texts(streamed, phase="install")
    assert SKIPPED_LINE not in texts(streamed, phase="install")
    assert "nothing to install" in texts(streamed, phase="install", source="stdout")
    assert "  - README.md" in texts(streamed, phase="scaffold")
    assert not (workspace(sandbox_id) / "README.md").exists()
    # WHEN a further iteration (from the second) changes a source file only
    third = iterate(stack, second, files={"public/index.html": NEW_PAGE})
    # THEN it succeeds too, skipping Install, in the same sandbox, serving the change
    assert stack.describe(third)["status"] == "SUCCEEDED"
    assert SKIPPED_LINE in texts(stream_records(redis_url, third), phase="install")
    assert get_json(f"{stack.api_url}builds/{third}")["sandbox_id"] == sandbox_id
    assert fetch_text(f"{preview}/index.html") == NEW_PAGE
    # AND a change of the install command alone runs Install again
    fourth = iterate(stack, third, install="python3 --version")
    assert stack.describe(fourth)["status"] == "SUCCEEDED"
    assert "Installing again: the install command changed" in texts(stream_records(redis_url, fourth), phase="install")


def test_a_failed_iteration_keeps_the_earlier_preview_and_sandbox(stack: LocalStack, redis_url: str) -> None:
    # GIVEN a succeeded build serving its page
    first, sandbox_id, preview = first_build(stack)
    original = fetch_text(f"{preview}/index.html")
    # WHEN an iteration breaks the build step (and changes the page)
    broken = iterate(
        stack, first, files={"build.py": "raise SystemExit('error: broken build')\n", "public/index.html": NEW_PAGE}
    )
    # THEN it fails in Build, Cleanup keeps the sandbox, and the earlier preview still answers
    assert stack.describe(broken)["status"] == "FAILED"
    streamed = stream_records(redis_url, broken)
    assert stages_started(streamed) == ["provision", "scaffold", "install", "build", "cleanup"]
    assert any(t.startswith(f"Sandbox {sandbox_id} kept: build {first} still serves") for t in texts(streamed))
    assert fetch_text(f"{preview}/index.html") == original
    assert get_json(f"{stack.api_url}builds/{first}")["sandbox_expires_at"]
    # AND a later iteration from the earlier build succeeds in the same sandbox (the build step restored)
    fixed = iterate(stack, first, files={"public/index.html": NEW_PAGE})
    assert stack.describe(fixed)["status"] == "SUCCEEDED"
    assert "  ~ build.py (" in " ".join(texts(stream_records(redis_url, fixed), phase="scaffold"))
    assert fetch_text(f"{preview}/index.html") == NEW_PAGE


def test_a_failed_install_in_an_iteration_makes_the_next_iteration_install_again(
    stack: LocalStack, redis_url: str
) -> None:
    # GIVEN a succeeded build whose install wrote deps.txt
    first, sandbox_id, _preview = first_build(stack, install="echo v1 > deps.txt")
    assert (workspace(sandbox_id) / "deps.txt").read_text() == "v1\n"
    # AND an iteration whose install breaks the tree and fails
    broken = iterate(stack, first, install="echo broken > deps.txt; exit 1")
    assert stack.describe(broken)["status"] == "FAILED"
    assert (workspace(sandbox_id) / "deps.txt").read_text() == "broken\n"
    # WHEN the next iteration from the first build (its install command, its manifests) runs
    fixed = iterate(stack, first, files={"public/index.html": NEW_PAGE})
    # THEN it runs Install again (the failed one left no fingerprint to skip on) and repairs the tree
    assert stack.describe(fixed)["status"] == "SUCCEEDED"
    install = texts(stream_records(redis_url, fixed), phase="install")
    assert SKIPPED_LINE not in install
    assert "Installing again: no earlier install in this sandbox" in install
    assert (workspace(sandbox_id) / "deps.txt").read_text() == "v1\n"


def test_iterating_from_a_failed_unknown_running_or_gone_build_is_refused(
    stack: LocalStack, redis_url: str, tmp_path: Path
) -> None:
    # GIVEN a failed build THEN an iteration from it is 409 not_succeeded
    failed = stack.submit(example("broken-build"))
    assert stack.wait(failed) == "FAILED"
    code, body = post_build(stack.api_url, {"iterate_from": failed, "files": {"a.txt": "x"}})
    assert (code, body["error"]) == (409, "not_succeeded")
    # AND from an unknown build: 404
    code, body = post_build(stack.api_url, {"iterate_from": "no-such-build-12", "files": {}})
    assert (code, body["error"]) == (404, "not_found")
    # GIVEN a succeeded build with an iteration running in its sandbox (its build step waits on a FIFO)
    first, sandbox_id, _preview = first_build(stack)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    code, body = post_build(
        stack.api_url, {"iterate_from": first, "build": f"echo waiting; read go < {gate}; python3 -u build.py"}
    )
    assert code == 202
    running = body["build_id"]
    wait_for_line(redis_url, running, phase="build", text="waiting")
    # WHEN another iteration of the same sandbox is asked for THEN 409 iteration_running
    code, body = post_build(stack.api_url, {"iterate_from": first, "files": {"public/x.html": "x"}})
    assert (code, body["error"]) == (409, "iteration_running")
    assert running in body["message"]
    # WHEN the running one finishes THEN the sandbox takes iterations again
    release = threading.Thread(target=lambda: gate.write_text("go\n"))
    release.start()
    assert stack.wait(running) == "SUCCEEDED"
    release.join(10)
    again = iterate(stack, running, files={"public/x.html": "x"}, build="python3 -u build.py")
    assert stack.describe(again)["status"] == "SUCCEEDED"
    # GIVEN the sandbox's keep-alive has lapsed THEN an iteration is 409 sandbox_gone
    asyncio.run(_lapse(redis_url, sandbox_id))
    code, body = post_build(stack.api_url, {"iterate_from": again, "files": {}})
    assert (code, body["error"]) == (409, "sandbox_gone")
    assert get_json(f"{stack.api_url}builds/{again}")["sandbox_expires_at"] is None


def wait_for_line(redis_url: str, build_id: str, *, phase: str, text: str, timeout: float = 60) -> None:
    """Block on the build's stream (XREAD BLOCK) until a ``text`` line of ``phase`` arrives."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    last, deadline = "0-0", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for _key, entries in client.xread({logs_key(build_id): last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if (fields.get("phase"), fields.get("text")) == (phase, text):
                        return
    finally:
        client.close()
    pytest.fail(f"no {text!r} line in the {phase} phase of {build_id} within {timeout:g}s")


async def _lapse(redis_url: str, sandbox_id: str) -> None:
    """What time does to a sandbox: its keep-alive is over (E2B then reaps it)."""
    client = Redis.from_url(redis_url)
    try:
        await lifetime.record_kept(client, sandbox_id, time.time() - 1, 60)
    finally:
        await client.aclose()

"""The sandbox protocol's contract, run against LocalSandboxRuntime and E2BSandboxRuntime (real SDK, fake envd)."""

import os
import urllib.request
from pathlib import Path

import pytest

from buildlogs.errors import CommandFailed
from buildlogs.pipeline.sandbox import TIMEOUT_EXIT_CODE, SandboxRuntime, create_runtime
from buildlogs.settings import get_settings
from tests.support.sandbox import eventually, free_port

SERVER = (
    "import http.server, os\n"
    "http.server.test(http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']), bind='127.0.0.1')\n"
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of the fake envd counts as dead
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[-1][:1] != "Z"


async def test_run_command_reports_output_and_exit_code(runtime: SandboxRuntime) -> None:
    # GIVEN callbacks for both streams
    chunks: list[tuple[str, str]] = []
    # WHEN a command writes to both and exits 0
    result = await runtime.run_command(
        "echo out-1; echo err-1 >&2; printf 'no-newline'",
        on_stdout=lambda c: chunks.append(("out", c)),
        on_stderr=lambda c: chunks.append(("err", c)),
    )
    # THEN the result and the callbacks carry each stream's text, tagged
    assert result == {"exit_code": 0, "stdout": "out-1\nno-newline", "stderr": "err-1\n", "timed_out": False}
    assert "".join(c for s, c in chunks if s == "out") == "out-1\nno-newline"
    assert "".join(c for s, c in chunks if s == "err") == "err-1\n"


async def test_non_zero_exit_is_a_result_not_an_exception(runtime: SandboxRuntime) -> None:
    result = await runtime.run_command("echo about to fail; exit 3")
    assert result["exit_code"] == 3
    assert result["stdout"] == "about to fail\n"
    assert result["timed_out"] is False


async def test_output_is_streamed_while_the_command_runs(runtime: SandboxRuntime, tmp_path: Path) -> None:
    # GIVEN a command that prints, then waits for a file only this test creates on seeing that print
    gate = tmp_path / "gate"
    seen: list[str] = []

    async def on_stdout(chunk: str) -> None:  # an async callback, awaited by the runtime
        seen.append(chunk)
        if "first" in "".join(seen):
            gate.touch()

    # WHEN it runs
    result = await runtime.run_command(
        f"echo first; while [ ! -e {gate} ]; do sleep 0.02; done; echo second", timeout=20, on_stdout=on_stdout
    )
    # THEN it only finished because the first line arrived before it exited
    assert result["exit_code"] == 0
    assert "".join(seen) == "first\nsecond\n"


async def test_timeout_kills_the_whole_process_group(runtime: SandboxRuntime, tmp_path: Path) -> None:
    # GIVEN a command whose child would outlive a naive kill of the shell
    pid_file = tmp_path / "child.pid"
    # WHEN it runs past its timeout
    result = await runtime.run_command(f"sleep 300 & echo $! > {pid_file}; echo started; wait", timeout=1)
    # THEN it is reported as timed out, with the output so far, and the child is gone too
    assert result["timed_out"] is True
    assert result["exit_code"] == TIMEOUT_EXIT_CODE
    assert "started" in result["stdout"]
    child = int(pid_file.read_text())
    await eventually(lambda: not _pid_alive(child), what="the child process to die")


async def test_cwd_and_envs(runtime: SandboxRuntime) -> None:
    default = await runtime.run_command("pwd")
    assert default["stdout"].strip() == os.path.realpath(runtime.workspace)
    elsewhere = await runtime.run_command("pwd", cwd="/tmp")
    assert elsewhere["stdout"].strip() == "/tmp"
    env = await runtime.run_command('echo "$GREETING"', envs={"GREETING": "hello sandbox"})
    assert env["stdout"] == "hello sandbox\n"


async def test_write_files_creates_nested_files_in_the_workspace(runtime: SandboxRuntime) -> None:
    written = await runtime.write_files({"a.txt": "alpha", "src/deep/b.txt": "bravo ✓"})
    assert sorted(written) == sorted([f"{runtime.workspace}/a.txt", f"{runtime.workspace}/src/deep/b.txt"])
    result = await runtime.run_command("cat a.txt src/deep/b.txt")
    assert result["stdout"] == "alphabravo ✓"


async def test_background_process_streams_and_is_killed(runtime: SandboxRuntime) -> None:
    # GIVEN a background command that prints and then runs forever
    seen: list[str] = []
    process = await runtime.run_background("echo ready; exec sleep 300", on_stdout=seen.append)
    # THEN its output arrives while it runs
    await eventually(lambda: "ready\n" in "".join(seen), what="background output")
    assert process.exit_code is None
    # WHEN it is killed THEN it is gone
    await process.kill()
    await eventually(lambda: not _pid_alive(process.pid), what="the background process to die")


async def test_start_dev_server_serves_the_project(runtime: SandboxRuntime) -> None:
    # GIVEN a tiny Python web project
    port = free_port()
    installed: list[str] = []
    # WHEN it is written, installed and started
    process = await runtime.start_dev_server(
        "site",
        {"server.py": SERVER, "index.html": "<h1>hello</h1>"},
        on_stdout=installed.append,
        start_command="python3 -u server.py",
        install_command="echo installing deps",
        port=port,
        envs={"PORT": str(port)},
        timeout=15,
    )
    try:
        # THEN the install output went to the callback and the preview URL serves the page
        assert "installing deps\n" in "".join(installed)
        assert await runtime.port_open(port)
        url = runtime.preview_url(port)
        assert url.endswith(f":{port}")
        with urllib.request.urlopen(f"{url}/index.html", timeout=5) as response:
            assert response.read() == b"<h1>hello</h1>"
    finally:
        await process.kill()


async def test_dev_server_that_never_opens_its_port_fails_clearly(runtime: SandboxRuntime) -> None:
    port = free_port()
    with pytest.raises(CommandFailed, match=rf"did not open port {port} within 1s"):
        await runtime.start_dev_server(".", {}, start_command="exec sleep 300", port=port, timeout=1)


async def test_dev_server_that_exits_fails_with_its_exit_code(runtime: SandboxRuntime) -> None:
    port = free_port()
    with pytest.raises(CommandFailed, match=rf"exited with code 7 before port {port} opened"):
        await runtime.start_dev_server(".", {}, start_command="echo boom >&2; exit 7", port=port, timeout=10)


async def test_dev_server_whose_install_fails_is_not_started(runtime: SandboxRuntime) -> None:
    with pytest.raises(CommandFailed, match="install command exited with code 3: exit 3") as failure:
        await runtime.start_dev_server(
            ".", {}, start_command="touch started", install_command="exit 3", port=free_port(), timeout=10
        )
    assert failure.value.exit_code == 3
    assert not (Path(runtime.workspace) / "started").exists()


async def test_reconnect_by_sandbox_id_sees_the_same_sandbox(runtime: SandboxRuntime, tmp_path: Path) -> None:
    # GIVEN a file written through one runtime
    await runtime.write_files({"kept.txt": "still here"})
    # WHEN another runtime connects by the sandbox id (as the next stage does)
    if runtime.sandbox_id.startswith("local-"):
        from buildlogs.pipeline.sandbox import LocalSandboxRuntime

        again: SandboxRuntime = LocalSandboxRuntime(workdir=tmp_path, sandbox_id=runtime.sandbox_id)
    else:
        get_settings.cache_clear()
        from buildlogs.pipeline.sandbox.e2b import E2BSandboxRuntime

        again = E2BSandboxRuntime(runtime.sandbox_id, workdir=runtime.workspace)
    await again.start()
    # THEN it sees the same files
    result = await again.run_command("cat kept.txt")
    assert result["stdout"] == "still here"
    assert again.sandbox_id == runtime.sandbox_id


async def test_local_kill_removes_the_sandbox_and_its_background_processes(tmp_path: Path) -> None:
    from buildlogs.pipeline.sandbox import LocalSandboxRuntime

    first = LocalSandboxRuntime(workdir=tmp_path, build_id="b1")
    await first.start()
    process = await first.run_background("exec sleep 300")
    await first.close()  # the stage that started it returns
    # WHEN a later stage kills the sandbox by id
    later = create_runtime(sandbox_id=first.sandbox_id)
    assert isinstance(later, LocalSandboxRuntime)
    later = LocalSandboxRuntime(workdir=tmp_path, sandbox_id=first.sandbox_id)
    await later.start()
    await later.kill()
    # THEN the process is gone, the directory too, and reconnecting fails
    await eventually(lambda: not _pid_alive(process.pid), what="the dev server to die")
    assert not Path(first.directory).exists()
    assert not await later.is_alive()

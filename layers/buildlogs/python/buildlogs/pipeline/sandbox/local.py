"""LocalSandboxRuntime: the sandbox protocol over local processes in a per-build directory.

The embedded default for local runs and tests. A sandbox is ``<root>/<sandbox_id>``: the project
lives in its ``app/`` directory, bookkeeping in ``.buildlogs/``. Commands run under ``bash -c`` in
their own session, so a timeout kills the whole process group. Background processes write to
files (a pipe nobody reads would block them once the stage that started them has returned) and
their process groups are recorded, so any later ``kill()`` — from another stage, or the
archiver — ends them.
"""

import asyncio
import codecs
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from buildlogs.errors import CommandFailed, SandboxUnavailable
from buildlogs.pipeline.sandbox.dev_server import DevServerMixin
from buildlogs.pipeline.sandbox.protocol import (
    TIMEOUT_EXIT_CODE,
    BackgroundProcess,
    CommandResult,
    OutputCallback,
    emit,
    merged_env,
)

LOCAL_PREFIX = "local-"
_LOCAL_ID = re.compile(r"^local-[A-Za-z0-9_-]{1,100}$")
READ_CHUNK = 65_536
TAIL_INTERVAL_S = 0.05
KILL_GRACE_S = 2.0
PIPE_DRAIN_S = 2.0
KEEP_OUTPUT_CHARS = 1_000_000  # the result keeps the tail of each stream; callbacks see everything


def default_root() -> Path:
    """Where local sandboxes live unless a ``workdir`` is given."""
    return Path(tempfile.gettempdir()) / "buildlogs-sandboxes"


def is_local_sandbox_id(sandbox_id: str) -> bool:
    return bool(_LOCAL_ID.fullmatch(sandbox_id))


def _base_env(home: Path) -> dict[str, str]:
    """A clean environment (a sandbox does not inherit the caller's credentials)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class _Collector:
    """Decodes one stream's bytes incrementally, forwards text chunks, keeps a bounded tail."""

    def __init__(self, callback: OutputCallback | None) -> None:
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunks: deque[str] = deque()
        self._size = 0

    async def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        if not text:
            return
        self._chunks.append(text)
        self._size += len(text)
        while self._size > KEEP_OUTPUT_CHARS and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())
        await emit(self._callback, text)

    @property
    def text(self) -> str:
        return "".join(self._chunks)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of group ``pgid`` remains (Linux /proc; else: no)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


async def _kill_group(pgid: int) -> None:
    """SIGKILL a process group and wait (bounded) until it is gone, so its ports are free."""
    _killpg(pgid, signal.SIGKILL)
    for _ in range(int(KILL_GRACE_S / 0.01)):  # polling: the group is not our child, nothing to await
        if not await asyncio.to_thread(_group_alive, pgid):
            return
        await asyncio.sleep(0.01)


def _spawn_background(
    command: str, cwd: str, env: dict[str, str], out: IO[bytes], err: IO[bytes]
) -> "subprocess.Popen[bytes]":
    # Popen, not asyncio: an asyncio subprocess transport kills its child when the loop closes.
    return subprocess.Popen(
        ["/bin/bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )


class LocalBackgroundProcess:
    """A background command; its output files are tailed to the callbacks while attached."""

    def __init__(
        self,
        popen: "subprocess.Popen[bytes]",
        out: Path,
        err: Path,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> None:
        self._popen = popen
        self._tails = [
            asyncio.get_running_loop().create_task(self._tail(out, _Collector(on_stdout))),
            asyncio.get_running_loop().create_task(self._tail(err, _Collector(on_stderr))),
        ]

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def exit_code(self) -> int | None:
        return self._popen.poll()

    async def _tail(self, path: Path, collector: _Collector) -> None:
        with path.open("rb") as stream:
            while True:
                data = stream.read(READ_CHUNK)
                if data:
                    await collector.feed(data)
                    continue
                if self._popen.poll() is not None:
                    await collector.feed(stream.read(), final=True)
                    return
                await asyncio.sleep(TAIL_INTERVAL_S)

    async def kill(self) -> None:
        _killpg(self._popen.pid, signal.SIGKILL)
        await asyncio.to_thread(self._popen.wait)
        await self.detach()

    async def detach(self) -> None:
        """Stop forwarding output; the process keeps running."""
        for task in self._tails:
            task.cancel()
        await asyncio.gather(*self._tails, return_exceptions=True)


class LocalSandboxRuntime(DevServerMixin):
    """The sandbox protocol over local processes; ``workdir`` is the directory holding sandboxes."""

    def __init__(
        self, workdir: str | Path | None = None, sandbox_id: str | None = None, *, build_id: str | None = None
    ) -> None:
        if sandbox_id is not None and not is_local_sandbox_id(sandbox_id):
            raise ValueError(f"not a local sandbox id: {sandbox_id[:80]!r}")
        self._root = Path(workdir) if workdir is not None else default_root()
        self._sandbox_id = sandbox_id
        self._build_id = build_id
        self._background: list[LocalBackgroundProcess] = []

    # -- identity and lifecycle -----------------------------------------------------------------

    @property
    def sandbox_id(self) -> str:
        if self._sandbox_id is None:
            raise RuntimeError("the sandbox is not started")
        return self._sandbox_id

    @property
    def directory(self) -> Path:
        return self._root / self.sandbox_id

    @property
    def workspace(self) -> str:
        """The project directory: files are written and commands run here by default."""
        return str(self.directory / "app")

    @property
    def _meta_dir(self) -> Path:
        return self.directory / ".buildlogs"

    async def start(self) -> None:
        """Create the sandbox directory, or check that the one named by ``sandbox_id`` still exists."""
        if self._sandbox_id is not None:
            if not await self.is_alive():
                raise SandboxUnavailable(f"sandbox {self._sandbox_id} no longer exists")
            return
        self._sandbox_id = f"{LOCAL_PREFIX}{self._build_id or 'sandbox'}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(_make_dirs, Path(self.workspace), self._meta_dir)

    async def is_alive(self) -> bool:
        return self._sandbox_id is not None and await asyncio.to_thread(os.path.isdir, self.workspace)

    async def kill(self) -> None:
        """End every background process the sandbox ever started and delete its directory."""
        for process in self._background:
            await process.detach()
        pids = self._meta_dir / "pids"
        groups = [int(line) for line in pids.read_text().split()] if pids.exists() else []
        # Commands running in the foreground right now (another stage's, or a cancelled one's):
        # killing a sandbox ends everything in it, as it does in E2B.
        groups += [int(path.name.removeprefix("fg-")) for path in self._meta_dir.glob("fg-*")]
        await asyncio.gather(*(_kill_group(pgid) for pgid in groups))
        shutil.rmtree(self.directory, ignore_errors=True)

    async def close(self) -> None:
        """Stop forwarding background output; processes and files stay (a later stage uses them)."""
        for process in self._background:
            await process.detach()

    async def start_dev_server(
        self,
        workspace_path: str,
        working_files: Mapping[str, str],
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        start_command: str,
        port: int,
        install_command: str | None = None,
        envs: Mapping[str, str] | None = None,
        timeout: float = 120,  # noqa: ASYNC109 (the protocol's name)
    ) -> BackgroundProcess:
        """As every runtime does, once ``port`` is known to be free on this machine.

        A local sandbox shares the machine's network: if another process already answers on the
        port, the wait for the port and the health check would reach that process and pass a
        build whose server never started. So the start fails at once, with the reason.
        """
        if await self.port_open(port):
            raise CommandFailed(
                f"port {port} is already in use on this machine (something else answers on 127.0.0.1:{port}); "
                "stop it or choose another port"
            )
        return await super().start_dev_server(
            workspace_path,
            working_files,
            on_stdout,
            on_stderr,
            start_command=start_command,
            port=port,
            install_command=install_command,
            envs=envs,
            timeout=timeout,
        )

    # -- commands -------------------------------------------------------------------------------

    def _cwd(self, cwd: str | None) -> str:
        if cwd is None:
            return self.workspace
        return cwd if os.path.isabs(cwd) else os.path.join(self.workspace, cwd)

    async def run_command(
        self,
        command: str,
        timeout: float = 120,  # noqa: ASYNC109 (the protocol's name)
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        envs: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``command`` to its end (or ``timeout``), streaming its output as it arrives."""
        process = await asyncio.create_subprocess_exec(
            "/bin/bash",
            "-c",
            command,
            cwd=self._cwd(cwd),
            env=merged_env(_base_env(self.directory), envs),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        marker = self._meta_dir / f"fg-{process.pid}"  # its own process group: kill() finds it here
        await asyncio.to_thread(marker.touch)
        out, err = _Collector(on_stdout), _Collector(on_stderr)
        readers = [
            asyncio.create_task(_pump(process.stdout, out)),
            asyncio.create_task(_pump(process.stderr, err)),
        ]
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            timed_out = True
            await _terminate_group(process)
        finally:
            # A grandchild may keep the pipes open: give the readers a moment, then stop them.
            done, pending = await asyncio.wait(readers, timeout=PIPE_DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            if process.returncode is None:
                await _terminate_group(process)
            marker.unlink(missing_ok=True)
        for task in done:
            task.result()  # a callback's exception surfaces here
        code = TIMEOUT_EXIT_CODE if timed_out else _exit_code(process.returncode)
        return {"exit_code": code, "stdout": out.text, "stderr": err.text, "timed_out": timed_out}

    async def run_background(
        self,
        command: str,
        cwd: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        envs: Mapping[str, str] | None = None,
    ) -> LocalBackgroundProcess:
        """Start ``command`` and return at once; ``kill()`` of any runtime of this sandbox ends it."""
        name = uuid.uuid4().hex[:8]
        out_path, err_path = self._meta_dir / f"bg-{name}.out", self._meta_dir / f"bg-{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            popen = _spawn_background(command, self._cwd(cwd), merged_env(_base_env(self.directory), envs), out, err)
        with (self._meta_dir / "pids").open("a") as pids:
            pids.write(f"{popen.pid}\n")
        process = LocalBackgroundProcess(popen, out_path, err_path, on_stdout, on_stderr)
        self._background.append(process)
        return process

    async def write_files(self, files: Mapping[str, str]) -> list[str]:
        """Write text files (paths relative to the workspace, or absolute inside it)."""
        return await asyncio.to_thread(_write_files, Path(self.workspace), files)

    async def remove_files(self, paths: list[str]) -> None:
        await asyncio.to_thread(_remove_files, Path(self.workspace), paths)

    async def stop_process(self, pid: int) -> None:
        """Kill the process group of a background command of this sandbox (never any other pid)."""
        pids = self._meta_dir / "pids"
        started = pids.read_text().split() if pids.exists() else []
        if str(pid) not in started:
            raise ValueError(f"process {pid} was not started in sandbox {self.sandbox_id}")
        await _kill_group(pid)
        for process in self._background:
            if process.pid == pid:
                await process.detach()

    async def stop_background_processes(self) -> None:
        """Kill the process group of every background command this sandbox started (never another pid)."""
        pids = self._meta_dir / "pids"
        groups = [int(line) for line in pids.read_text().split()] if pids.exists() else []
        await asyncio.gather(*(_kill_group(pgid) for pgid in groups))
        for process in self._background:
            await process.detach()

    async def extend(self, seconds: int) -> None:
        """Nothing to do: a local sandbox lives until it is killed (the local run reaps it at exit)."""

    def preview_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    async def port_open(self, port: int) -> bool:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


def _make_dirs(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True)


def _write_files(workspace: Path, files: Mapping[str, str]) -> list[str]:
    root = workspace.resolve()
    written = []
    for name, text in files.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"refusing to write outside the workspace: {name[:80]!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(str(target))
    return written


def _remove_files(workspace: Path, paths: list[str]) -> None:
    """Unlink each path itself (a symlink is removed, never the file it points to); its directory,
    resolved, must be inside the workspace."""
    root = workspace.resolve()
    for name in paths:
        path = root / name
        if path.name in ("", ".", "..") or not path.parent.resolve().is_relative_to(root):
            raise ValueError(f"refusing to delete outside the workspace: {name[:80]!r}")
        path.parent.resolve().joinpath(path.name).unlink(missing_ok=True)


async def _pump(stream: asyncio.StreamReader | None, collector: _Collector) -> None:
    assert stream is not None
    while data := await stream.read(READ_CHUNK):
        await collector.feed(data)
    await collector.feed(b"", final=True)


async def _terminate_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL it if it is still there after a grace period."""
    _killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_S)
    except TimeoutError:
        _killpg(process.pid, signal.SIGKILL)
        await process.wait()
    _killpg(process.pid, signal.SIGKILL)  # stragglers that ignored SIGTERM


def _exit_code(returncode: int | None) -> int:
    if returncode is None:
        return -1
    return returncode if returncode >= 0 else 128 - returncode

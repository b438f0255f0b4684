"""A fake E2B envd serving the SDK's own generated connect-rpc stub, running real subprocesses.

With ``E2B_DEBUG=true`` the real e2b SDK skips the control plane and talks to envd at
``http://localhost:49983``. This server implements what our adapter uses: the process service
(Start streams real stdout/stderr bytes as they arrive, SendSignal kills the process group,
List) and the HTTP routes ``GET /health`` and ``POST /files`` (multipart upload). The sandbox's
filesystem is this host's, so tests give the adapter a temporary work directory.

Like envd, a process keeps running (and its output keeps being drained) when the client
disconnects from its stream: only SendSignal ends it.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.client_shared import ENVD_JSON_CODEC
from e2b.envd.process import process_pb
from e2b.envd.process.process_connect import ProcessASGIApplication
from protobuf import Oneof

ENVD_PORT = 49983

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class _Proc:
    process: asyncio.subprocess.Process
    config: process_pb.ProcessConfig
    events: asyncio.Queue[process_pb.ProcessEvent | None] = field(default_factory=asyncio.Queue)
    pump: "asyncio.Task[None] | None" = None


def _event(**kwargs: Any) -> process_pb.StartResponse:
    return process_pb.StartResponse(event=process_pb.ProcessEvent(**kwargs))


class FakeProcessService:
    """envd's process service over asyncio subprocesses (each in its own process group)."""

    def __init__(self) -> None:
        self.processes: dict[int, _Proc] = {}
        self.started: list[process_pb.ProcessConfig] = []

    async def list(self, request: process_pb.ListRequest, ctx: RequestContext[Any, Any]) -> process_pb.ListResponse:
        return process_pb.ListResponse(
            processes=[
                process_pb.ProcessInfo(config=proc.config, pid=pid)
                for pid, proc in self.processes.items()
                if proc.process.returncode is None
            ]
        )

    async def start(
        self, request: process_pb.StartRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[process_pb.StartResponse]:
        config = request.process or process_pb.ProcessConfig()
        self.started.append(config)
        cwd = config.cwd if config.has_field("cwd") and config.cwd else None
        if cwd and not Path(cwd).is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"cwd '{cwd}' does not exist")
        env = {**os.environ, **dict(config.envs)}
        process = await asyncio.create_subprocess_exec(
            config.cmd,
            *config.args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        proc = _Proc(process, config)
        proc.pump = asyncio.get_running_loop().create_task(self._pump(proc))
        self.processes[process.pid] = proc
        yield _event(event=Oneof("start", process_pb.ProcessEvent.StartEvent(pid=process.pid)))
        while True:
            item = await proc.events.get()
            if item is None:
                return
            yield process_pb.StartResponse(event=item)

    async def _pump(self, proc: _Proc) -> None:
        """Drain both pipes as bytes arrive (even with no client attached), then report the end."""

        async def read(stream: asyncio.StreamReader | None, name: str) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):
                data = process_pb.ProcessEvent.DataEvent(output=Oneof(name, chunk))  # type: ignore[arg-type]
                proc.events.put_nowait(process_pb.ProcessEvent(event=Oneof("data", data)))

        await asyncio.gather(read(proc.process.stdout, "stdout"), read(proc.process.stderr, "stderr"))
        code = await proc.process.wait()
        exit_code = code if code >= 0 else -1
        status = f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name.lower()}"
        end = process_pb.ProcessEvent.EndEvent(exit_code=exit_code, exited=code >= 0, status=status)
        if code < 0:
            end = process_pb.ProcessEvent.EndEvent(exit_code=exit_code, exited=False, status=status, error=status)
        proc.events.put_nowait(process_pb.ProcessEvent(event=Oneof("end", end)))
        proc.events.put_nowait(None)

    async def send_signal(
        self, request: process_pb.SendSignalRequest, ctx: RequestContext[Any, Any]
    ) -> process_pb.SendSignalResponse:
        selector = request.process.selector if request.process else None
        pid = selector.value if isinstance(selector, Oneof) and selector.field == "pid" else None
        proc = self.processes.get(pid) if isinstance(pid, int) else None
        if proc is None or proc.process.returncode is not None:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
        sig = signal.SIGKILL if request.signal == process_pb.Signal.SIGKILL else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, sig)
        return process_pb.SendSignalResponse()

    def __getattr__(self, name: str) -> Any:
        async def unimplemented(*_args: Any) -> Any:
            raise ConnectError(Code.UNIMPLEMENTED, f"fake envd does not implement {name}")

        return unimplemented

    async def kill_all(self) -> None:
        for proc in self.processes.values():
            if proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
        for proc in self.processes.values():
            if proc.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.pump, 5)


class FakeEnvd:
    """The ASGI app: ``/process.Process/*`` through the SDK's stub, ``/health`` and ``/files`` by hand."""

    def __init__(self) -> None:
        self.process = FakeProcessService()
        self.rpc = ProcessASGIApplication(self.process, codecs=[ENVD_JSON_CODEC])  # type: ignore[arg-type]
        self.written: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(self.rpc.path + "/"):
            await self.rpc(scope, receive, send)  # type: ignore[arg-type]
        elif path == "/health":
            await _respond(send, 204, b"")
        elif path == "/files" and scope["method"] == "POST":
            await self._files(scope, receive, send)
        else:
            await _respond(send, 404, json.dumps({"code": 404, "message": f"no route {path}"}).encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.process.kill_all()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _files(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        head = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode()
        parsed = BytesParser(policy=HTTP).parsebytes(head + body)
        results = []
        for part in parsed.iter_parts():
            target = part.get_filename()
            if not target or not target.startswith("/"):
                await _respond(send, 400, json.dumps({"code": 400, "message": f"bad path {target!r}"}).encode())
                return
            data = part.get_payload(decode=True)
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else b"")
            self.written.append(target)
            results.append({"name": path.name, "type": "file", "path": target})
        await _respond(send, 200, json.dumps(results).encode(), "application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type.encode())]})
    await send({"type": "http.response.body", "body": body})


class FakeEnvdServer:
    """Runs :class:`FakeEnvd` under uvicorn on a background thread (its own event loop)."""

    def __init__(self, port: int = ENVD_PORT) -> None:
        self.port = port
        self.app = FakeEnvd()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-envd", daemon=True)

    def __enter__(self) -> "FakeEnvdServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake envd did not start on port {self.port}")
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            pass
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

"""The local API's HTTP server: a client that goes away mid-request is not an error on the run's terminal."""

import socket
import struct
import threading
import time
from http.client import RemoteDisconnected
from typing import Any
from urllib.request import urlopen

import pytest

from buildlogs.client import local_api

BIG_BODY = "x" * 4_000_000  # far more than a socket buffer: the server is still writing when the peer is gone


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name and t.is_alive()]


def test_a_client_that_disconnects_before_reading_is_not_reported_and_the_server_keeps_serving(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the local API over a handler that answers /slow only once its client has gone
    client_gone = threading.Event()

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        if event["path"] == "/slow":
            assert client_gone.wait(10)
            return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": BIG_BODY}
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "ok"}

    with local_api.serve(handler) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        # WHEN a raw client sends a request and closes its socket (with a reset) before reading
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        client_gone.set()
        deadline = time.monotonic() + 10
        while _request_threads():  # the server has finished with that request (its write failed)
            assert time.monotonic() < deadline, "the request thread never ended"
            time.sleep(0.01)
        # THEN the server still answers
        with urlopen(f"{url}fine", timeout=10) as response:
            assert response.read() == b"ok"
    # AND nothing was printed: no BrokenPipeError / ConnectionResetError traceback
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_other_errors_of_a_request_are_still_reported(capfd: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler that fails (a bug, not a client going away)
    def handler(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
        raise RuntimeError("a bug in the handler")

    with local_api.serve(handler) as url:
        # WHEN a request reaches it
        with pytest.raises(RemoteDisconnected):  # the connection is closed without an answer
            urlopen(f"{url}boom", timeout=10)
        deadline = time.monotonic() + 10
        while _request_threads():
            assert time.monotonic() < deadline, "the request thread never ended"
            time.sleep(0.01)
    # THEN the traceback is shown as before
    assert "RuntimeError: a bug in the handler" in capfd.readouterr().err

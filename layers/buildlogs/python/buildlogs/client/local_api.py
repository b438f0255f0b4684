"""The REST API on 127.0.0.1: what API Gateway does for the API Lambda, in a small HTTP server.

Each request becomes an API Gateway REST proxy event (v1, the shape the deployed API Lambda
receives) and goes to a handler ``(event, context) -> {statusCode, headers, body, ...}`` — the
real ``functions.api.handler.lambda_handler`` in a local run, or the bare resolver in tests.
One thread per request, as concurrent Lambda invocations would be. ``GET /builds/{id}/view`` is
answered here with the log viewer page (a static file): it is not an API route.
"""

import base64
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

from buildlogs.keys import BUILD_ID_PATTERN

LOCAL_ACCOUNT = "123456789012"
LOCAL_CALLER_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:user/local"  # the caller IAM auth would name
STAGE_NAME = "local"

ApiHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

# The viewer's address: <API root>/builds/<id>/view (the page finds the API two levels up).
VIEW_PATH = re.compile(BUILD_ID_PATTERN.replace("^", "^/builds/").replace("$", "/view$"))
# The page's headers: no caching of a stale page, no sniffing, no referrer carrying build ids away.
VIEWER_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@cache
def viewer_page() -> bytes:
    """The log viewer: one static HTML file (its CSS and JS inline) shipped as package data."""
    return files("buildlogs.client").joinpath("viewer/viewer.html").read_bytes()


def send_viewer_page(request: BaseHTTPRequestHandler) -> None:
    """Answer ``request`` with the viewer page (the local API and ``buildlogs view`` serve the same)."""
    page = viewer_page()
    request.send_response(200)
    for name, value in VIEWER_HEADERS.items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(page)))
    request.end_headers()
    request.wfile.write(page)


def is_view_path(target: str) -> bool:
    """Whether ``target`` (a path, with or without a query) asks for the viewer page."""
    return VIEW_PATH.fullmatch(urlsplit(target).path) is not None


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that Powertools reads."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def rest_event(
    method: str, target: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``method target`` (``target`` = path with its query)."""
    split = urlsplit(target)
    multi = parse_qs(split.query, keep_blank_values=True)
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    text: str | None = None
    encoded = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": split.path,
        "path": split.path,
        "httpMethod": method,
        "headers": lowered,
        "multiValueHeaders": {name: [value] for name, value in lowered.items()},
        "queryStringParameters": {name: values[-1] for name, values in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "accountId": LOCAL_ACCOUNT,
            "stage": STAGE_NAME,
            "path": f"/{STAGE_NAME}{split.path}",
            "httpMethod": method,
            "resourcePath": split.path,
            "identity": {"sourceIp": "127.0.0.1", "userArn": LOCAL_CALLER_ARN, "caller": LOCAL_CALLER_ARN},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _request_handler(handler: ApiHandler) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            if self.command == "GET" and is_view_path(self.path):
                send_viewer_page(self)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            event = rest_event(self.command, self.path, body=body, headers=dict(self.headers.items()))
            result = handler(event, LocalLambdaContext("buildlogs-api"))
            raw = result.get("body") or ""
            payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
            self.send_response(int(result["statusCode"]))
            sent = set()
            for name, values in (result.get("multiValueHeaders") or {}).items():
                for value in values:
                    self.send_header(name, str(value))
                sent.add(name.lower())
            for name, value in (result.get("headers") or {}).items():
                if name.lower() not in sent:
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the API logs through Powertools."""

    return _Handler


# A client that went away (Ctrl-C in a second terminal's `tail`) while its request was served.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet when the client disconnected; any other error is reported as socketserver does."""
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)


@contextmanager
def serve(handler: ApiHandler, port: int = 0) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1:``port`` (0: a free one); yields the API root URL."""
    with serving(QuietServer(("127.0.0.1", port), _request_handler(handler)), "buildlogs-local-api") as bound:
        yield f"http://127.0.0.1:{bound}/"


@contextmanager
def serving(server: QuietServer, name: str) -> Iterator[int]:
    """Run ``server`` on a daemon thread while the block runs (yields its port); shut it down after."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

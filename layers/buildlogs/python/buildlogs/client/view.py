"""``buildlogs view <id>``: the log viewer on 127.0.0.1, its API calls forwarded to the configured API.

A deployed API takes IAM (SigV4) requests only and a browser cannot sign them, so this small
proxy serves the page at ``/builds/<id>/view`` and forwards the page's requests to the API,
signed with the client's credentials (:class:`buildlogs.client.http.SigV4`, unsigned for a local
API). Bodies stream through as they arrive (a long-poll, an event stream, a big ``logs.txt``);
status codes and the headers the page relies on pass unchanged (a 302 to a presigned S3 URL is
followed by the browser itself).

Holding the user's credentials, it forwards as little as the page needs: ``GET`` only (nothing
can start or cancel a build through it), only the viewed build's routes the page calls (status,
logs, search, logs.txt, events: exact paths, rebuilt from the route rather than copied from the
request, see :func:`forward_target`), only when the ``Host`` header names the proxy itself (a
DNS-rebinding page cannot use it), and it sends no CORS headers (other origins cannot read its
answers).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import quote

import httpx

from buildlogs.client.http import HTTP_TIMEOUT, ApiError, SigV4
from buildlogs.client.local_api import QuietServer, send_viewer_page, serving
from buildlogs.keys import validate_build_id

# Request headers the page's calls carry to the API (EventSource resumes with Last-Event-ID).
REQUEST_HEADERS = ("accept", "last-event-id", "cache-control")
# Response headers the page relies on (a download's file name, a redirect, a back-off).
RESPONSE_HEADERS = ("content-type", "location", "retry-after", "content-disposition", "cache-control")
NO_BODY = frozenset({204, 304})
# The build's API routes the page calls, below /builds/<id> ("" is the build's status).
FORWARDED_ROUTES = ("", "/logs", "/logs/search", "/logs.txt", "/events")


def forward_target(target: str, build_id: str) -> str | None:
    """The path and query to forward for the request target ``target``, or ``None`` to refuse it.

    The URL forwarded is built from the known route the target names, never from the target
    itself: httpx resolves ``.``/``..`` segments before signing, so a raw ``/builds/<id>/../x``
    would reach (signed) a route of another build or the whole API, and an absolute-form target
    would be appended as it is. Only origin-form targets whose path is exactly one of the build's
    routes pass; dots, empty segments, backslashes and any percent-encoding in the path are refused
    (a build id and the route names need none), and a fragment is dropped.
    """
    if not target.startswith("/") or target.startswith("//"):
        return None  # absolute-form (http://host/...), authority-form, or a scheme-relative path
    path, _, query = target.partition("#")[0].partition("?")
    if "%" in path or "\\" in path or any(segment in ("", ".", "..") for segment in path.split("/")[1:]):
        return None
    prefix = f"/builds/{quote(build_id, safe='')}"
    for known in (prefix + route for route in FORWARDED_ROUTES):
        if path == known:
            return known + ("?" + query if query else "")
    return None


def _handler(api_url: str, build_id: str, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
    prefix = f"/builds/{quote(build_id, safe='')}"
    page_path = f"{prefix}/view"

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not self._from_this_host():
                self._reply(403, "forbidden", "the Host header does not name this proxy")
                return
            if self.path.partition("?")[0].partition("#")[0] == page_path:
                send_viewer_page(self)
            elif (target := forward_target(self.path, build_id)) is not None:
                self._forward(target)
            else:
                self._reply(404, "not_found", f"this proxy serves the viewer's routes of build {build_id} only")

        def _refuse(self) -> None:
            self._reply(405, "method_not_allowed", "the viewer proxy forwards GET requests only", allow="GET")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse

        def _from_this_host(self) -> bool:
            address: Any = self.server.server_address
            port = address[1]
            return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

        def _forward(self, target: str) -> None:
            headers = {name: value for name in REQUEST_HEADERS if (value := self.headers.get(name)) is not None}
            try:
                with client.stream("GET", api_url + target, headers=headers) as response:
                    self.send_response(response.status_code)
                    for name in RESPONSE_HEADERS:
                        if name in response.headers:
                            self.send_header(name, response.headers[name])
                    if response.status_code in NO_BODY:
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in response.iter_bytes():
                        if chunk:
                            self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
            except ApiError as exc:  # no credentials to sign with
                self._reply(502, "bad_gateway", exc.message)
            except httpx.InvalidURL as exc:  # a query httpx will not send (control characters)
                self._reply(400, "invalid_request", f"cannot forward this request: {exc}")
            except httpx.TransportError as exc:
                self._reply(502, "bad_gateway", f"cannot reach the API: {exc or type(exc).__name__}")

        def _reply(self, status: int, error: str, message: str, **extra: str) -> None:
            body = httpx.Response(status, json={"error": error, "message": message}).content
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name.title(), value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows the page's URL, not every request."""

    return _Handler


@contextmanager
def serve_view(
    api_url: str,
    build_id: str,
    *,
    port: int = 0,
    transport: httpx.BaseTransport | None = None,
    credentials: Any = None,
) -> Iterator[str]:
    """The proxy for ``build_id`` on 127.0.0.1:``port`` (0: a free one); yields the page's URL.

    ``transport`` and ``credentials`` are for tests (an in-memory API, fixed keys).
    """
    validate_build_id(build_id)
    client = httpx.Client(transport=transport, auth=SigV4(credentials), timeout=HTTP_TIMEOUT, follow_redirects=False)
    server = QuietServer(("127.0.0.1", port), _handler(api_url.rstrip("/"), build_id, client))
    try:
        with serving(server, "buildlogs-view") as bound:
            yield f"http://127.0.0.1:{bound}/builds/{quote(build_id, safe='')}/view"
    finally:
        client.close()

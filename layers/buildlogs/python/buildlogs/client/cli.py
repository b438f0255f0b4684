"""The client CLI: ``submit SPEC.json`` starts a build, ``tail BUILD_ID`` follows its log.

``python -m buildlogs.client.cli [--api URL] submit SPEC.json [--follow]`` ·
``python -m buildlogs.client.cli [--api URL] tail BUILD_ID [--after ID]``. The API root comes from
``--api`` or ``BUILDLOGS_API_URL``. Requests to a deployed API are signed with SigV4 (service
``execute-api``, credentials from the standard AWS chain, region from the URL); requests to
localhost go unsigned (a local API). Standard library HTTP + botocore's signer: nothing to install.

``tail`` exits with the build's result: 0 SUCCEEDED, 1 FAILED, 2 TIMED_OUT or ABORTED,
3 when the API cannot answer (unknown build, any other 4xx, or an outage that outlasts the retries).
``tail`` rides out transient errors (429, 502, 503, 504, network errors): it retries the same
cursor (no gap, no duplicate) with capped exponential backoff for up to about two minutes of
consecutive failures, with one dim notice on stderr per outage.
"""

import argparse
import http.client
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from buildlogs.client.console import RESET, format_entry, use_colour
from buildlogs.settings import get_settings
from buildlogs.stream.entries import LogEntry

EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "TIMED_OUT": 2, "ABORTED": 2}
EXIT_API_ERROR = 3
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LONG_POLL_SECONDS = 20  # the API's longest wait (API Gateway times out at 29 s)
HTTP_TIMEOUT_SECONDS = 30.0
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
# Worth retrying: throttled, and API Gateway / Lambda unavailable or timed out.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
DIM = "\033[2m"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes


Transport = Callable[[HttpRequest], HttpResponse]


class ApiError(RuntimeError):
    """The API answered with an error (its ``{error, message}``) or could not be reached."""

    def __init__(self, status: int, message: str, *, network: bool = False) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.network = network  # the API could not be reached (no HTTP status)

    @property
    def transient(self) -> bool:
        """Worth retrying: a network error, throttling, or the API briefly unavailable."""
        return self.network or self.status in TRANSIENT_STATUSES


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retries of transient errors: ``first`` seconds doubling up to ``cap``; an outage (consecutive
    failures) longer than ``give_up_after`` seconds ends the retries. ``sleep`` and ``clock`` are
    injectable so tests never wait on the clock."""

    first: float = 0.5
    cap: float = 8.0
    give_up_after: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def call(self, operation: Callable[[], T], on_outage: Callable[[ApiError], None]) -> T:
        """``operation()``, retried while it fails transiently; ``on_outage`` once per outage."""
        outage_started: float | None = None  # when the first failed attempt of this outage began
        delay = self.first
        while True:
            attempt_started = self.clock()
            try:
                return operation()
            except ApiError as exc:
                if not exc.transient:
                    raise
                if outage_started is None:
                    outage_started = attempt_started
                    on_outage(exc)
                if self.clock() + delay - outage_started > self.give_up_after:
                    raise
                self.sleep(delay)
                delay = min(delay * 2, self.cap)


def urllib_transport(request: HttpRequest) -> HttpResponse:
    """Send ``request`` with urllib; HTTP errors are responses, not exceptions."""
    if urlsplit(request.url).scheme not in ("http", "https"):
        raise ApiError(0, "the API URL must be http:// or https://")
    prepared = urllib.request.Request(  # noqa: S310  # the scheme is checked above
        request.url, data=request.body, headers=request.headers, method=request.method
    )
    try:
        with urllib.request.urlopen(prepared, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, exc.read())
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ApiError(0, f"cannot reach the API: {exc}", network=True) from None


def is_local(url: str) -> bool:
    """Requests to a local API (localhost) go unsigned."""
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def region_for(url: str) -> str:
    """The region of an ``execute-api`` URL; else the credential chain's configured region."""
    match = _REGION_IN_HOST.search(urlsplit(url).hostname or "")
    if match:
        return match.group(1)
    import botocore.session

    return str(botocore.session.get_session().get_config_variable("region") or "us-east-1")


def sign(request: HttpRequest, credentials: Any = None) -> HttpRequest:
    """``request`` with SigV4 headers for ``execute-api`` (standard credential chain by default)."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = credentials or botocore.session.get_session().get_credentials()
    if credentials is None:
        raise ApiError(0, "no AWS credentials found (standard chain): cannot sign the request")
    aws_request = AWSRequest(method=request.method, url=request.url, data=request.body, headers=request.headers)
    SigV4Auth(credentials, "execute-api", region_for(request.url)).add_auth(aws_request)
    return HttpRequest(request.method, request.url, dict(aws_request.headers.items()), request.body)


class Client:
    """The API, through ``transport``; signs unless the API is on localhost."""

    def __init__(self, api_url: str, transport: Transport = urllib_transport, credentials: Any = None) -> None:
        if not api_url:
            raise ApiError(0, "no API URL: pass --api or set BUILDLOGS_API_URL")
        self.api_url = api_url.rstrip("/")
        self._transport = transport
        self._credentials = credentials

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.api_url + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        prepared = HttpRequest(method, url, headers, data)
        if not is_local(url):
            prepared = sign(prepared, self._credentials)
        response = self._transport(prepared)
        try:
            payload = json.loads(response.body or b"null")
        except ValueError:
            payload = None
        if response.status >= 400:
            message = payload.get("message") if isinstance(payload, dict) else None
            raise ApiError(response.status, str(message or response.body[:200].decode("utf-8", "replace")))
        if not isinstance(payload, dict):  # a proxy's HTML page, an empty body: a clear error, no traceback
            raise ApiError(response.status, f"the API answered {method} {path} with something that is not JSON")
        return payload

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/builds", spec)
        return result

    def status(self, build_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/builds/{quote(build_id, safe='')}")
        return result

    def logs(self, build_id: str, after: str, wait: int = LONG_POLL_SECONDS, limit: int = 1000) -> dict[str, Any]:
        query = {"after": after, "limit": limit, "wait": wait}
        result: dict[str, Any] = self.request("GET", f"/builds/{quote(build_id, safe='')}/logs", query=query)
        if not isinstance(result.get("entries"), list) or "next" not in result or "done" not in result:
            raise ApiError(200, "the logs response lacks entries/next/done")
        return result


def _outage_notice(err: TextIO) -> Callable[[ApiError], None]:
    def notice(exc: ApiError) -> None:
        text = f"buildlogs: {exc}; retrying (the log resumes where it stopped)"
        print(f"{DIM}{text}{RESET}" if use_colour(err) else text, file=err, flush=True)

    return notice


def tail(
    client: Client,
    build_id: str,
    out: TextIO,
    *,
    after: str = "0-0",
    colour: bool = False,
    backoff: Backoff | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the log until it ends (long-poll); return the build's exit code. Transient errors are
    retried (``backoff``) from the same cursor, so no entry is skipped or printed twice."""
    backoff = backoff or Backoff()
    notice = _outage_notice(err or sys.stderr)
    cursor, status = after, ""
    while True:
        page = backoff.call(partial(client.logs, build_id, cursor), notice)
        for raw in page["entries"]:
            entry = LogEntry.model_validate(raw)
            print(format_entry(entry, colour), file=out, flush=True)
            if entry.event == "end":
                status = str(getattr(entry, "status", "") or "")
        cursor = page["next"]
        if page["done"]:
            break
    status = status or str(backoff.call(partial(client.status, build_id), notice).get("status", ""))
    return EXIT_CODES.get(status, EXIT_CODES["FAILED"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildlogs", description="Start builds and follow their logs.")
    parser.add_argument("--api", help="the API root URL (default: $BUILDLOGS_API_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="start a build from a BuildSpec JSON file")
    submit.add_argument("spec", type=Path)
    submit.add_argument("--follow", action="store_true", help="then tail its log")
    follow = commands.add_parser("tail", help="follow a build's log; exit with its result")
    follow.add_argument("build_id")
    follow.add_argument("--after", default="0-0", help="start after this entry id")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: Transport = urllib_transport,
    out: TextIO | None = None,
    backoff: Backoff | None = None,
) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    try:
        client = Client(args.api or get_settings().api_url, transport)
        if args.command == "submit":
            try:
                spec = json.loads(args.spec.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                print(f"cannot read {args.spec}: {exc}", file=sys.stderr)
                return EXIT_API_ERROR
            result = client.submit(spec)
            build_id = str(result["build_id"])
            print(build_id, file=out)
            print(f"status: {client.api_url}{result['status_url']}", file=out)
            print(f"logs:   {client.api_url}{result['logs_url']}", file=out, flush=True)
            if not args.follow:
                return 0
            return tail(client, build_id, out, colour=use_colour(out), backoff=backoff)
        return tail(client, args.build_id, out, after=args.after, colour=use_colour(out), backoff=backoff)
    except ApiError as exc:
        print(f"buildlogs: {exc}", file=sys.stderr)
        return EXIT_API_ERROR


if __name__ == "__main__":
    sys.exit(main())

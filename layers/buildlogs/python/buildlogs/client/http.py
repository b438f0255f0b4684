"""The API over HTTP: httpx, SigV4 for a deployed API, and the retry policy for transient errors.

Requests to a deployed API are signed with SigV4 (service ``execute-api``, credentials from the
standard AWS chain, region from the URL); requests to localhost go unsigned (a local API).

Retries (:class:`RetryPolicy`, tenacity): 429, 502, 503, 504 and network errors are retried with
capped exponential backoff (0.5 s doubling to 8 s, ``Retry-After`` honoured up to the cap) until an
outage (consecutive failures of one request, time spent in the requests included) would pass
``give_up_after``; the caller gets one notice per outage. Every other error is raised at once. A
refused connection to a *local* API is not retried: nothing listens there, and saying so at once
beats two minutes of silence. A log page is retried with the same cursor, so a retry can neither
skip nor repeat an entry. ``POST`` is retried only when the API cannot have acted on it (429, or
a connection that never opened), so a retry never starts a second build.
"""

import json
import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LONG_POLL_SECONDS = 20  # the API's longest wait (API Gateway times out at 29 s)
PAGE_LIMIT = 1000  # the API's largest page
HTTP_TIMEOUT = httpx.Timeout(LONG_POLL_SECONDS + 10.0, connect=5.0)
# Worth retrying: throttled, and API Gateway / Lambda unavailable or timed out.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
T = TypeVar("T")


class ApiError(RuntimeError):
    """The API answered with an error (its ``{error, message, field?}``) or could not be reached.

    ``reasons`` holds every reason of a 400 (the API may list several); ``network``: no HTTP
    answer at all; ``refused_locally``: a local API that is not running (never retried).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        network: bool = False,
        refused_locally: bool = False,
        reasons: tuple[str, ...] = (),
        retry_after: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.network = network
        self.refused_locally = refused_locally
        self.reasons = reasons
        self.retry_after = retry_after
        self.sent = sent  # False: the request never left (the connection did not open)

    @property
    def transient(self) -> bool:
        """Worth retrying: a network error, throttling, or the API briefly unavailable."""
        if self.refused_locally:
            return False
        return self.network or self.status in TRANSIENT_STATUSES

    def describe(self) -> str:
        """The error and, below it, every reason the API gave (one per line)."""
        lines = [str(self)]
        lines += [f"  - {reason}" for reason in self.reasons if reason != self.message]
        return "\n".join(lines)


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


# Headers that SigV4 covers: the ones the API Gateway front keeps as sent. httpx's own
# (user-agent, accept-encoding, connection) stay out of the signature, as in botocore's clients.
_SIGNED_HEADERS = ("host", "content-type", "accept")


def sign(request: httpx.Request, credentials: Any = None) -> httpx.Request:
    """``request`` with SigV4 headers for ``execute-api`` (standard credential chain by default)."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = credentials or botocore.session.get_session().get_credentials()
    if credentials is None:
        raise ApiError(0, "no AWS credentials found (standard chain): cannot sign the request", sent=False)
    url = str(request.url)
    headers = {name: request.headers[name] for name in _SIGNED_HEADERS if name in request.headers}
    aws_request = AWSRequest(method=request.method, url=url, data=request.content, headers=headers)
    SigV4Auth(credentials, "execute-api", region_for(url)).add_auth(aws_request)
    for name, value in aws_request.headers.items():
        if name.lower() not in _SIGNED_HEADERS:  # Authorization, X-Amz-Date, X-Amz-Security-Token
            request.headers[name] = value
    return request


class SigV4(httpx.Auth):
    """httpx authentication: SigV4 for a deployed API, nothing for a local one."""

    requires_request_body = True

    def __init__(self, credentials: Any = None) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request if is_local(str(request.url)) else sign(request, self._credentials)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff over one request's consecutive failures (an outage).

    ``sleep`` and ``clock`` are injectable so tests never wait on the clock.
    """

    first: float = 0.5
    cap: float = 8.0
    give_up_after: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def call(
        self,
        operation: Callable[[], T],
        on_outage: Callable[[ApiError], None],
        retry_if: Callable[[ApiError], bool] = lambda exc: exc.transient,
    ) -> T:
        """``operation()``, retried while ``retry_if`` its error; ``on_outage`` once, at the first failure."""
        outage_started: list[float] = []
        backoff = wait_exponential(multiplier=self.first, exp_base=2, max=self.cap)

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            error = _error_of(state)
            if error is not None and error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self.cap))
            return delay

        def started(state: RetryCallState) -> None:
            if state.attempt_number == 1:
                outage_started.append(self.clock())

        def first_failure(state: RetryCallState) -> None:
            error = _error_of(state)
            if state.attempt_number == 1 and error is not None:
                on_outage(error)

        def stop(state: RetryCallState) -> bool:
            return self.clock() + (state.upcoming_sleep or 0.0) - outage_started[0] > self.give_up_after

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, ApiError) and retry_if(exc)),
            wait=wait,
            stop=stop,
            before=started,
            after=first_failure,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(operation)


def _error_of(state: RetryCallState) -> ApiError | None:
    error = state.outcome.exception() if state.outcome is not None else None
    return error if isinstance(error, ApiError) else None


def _post_retry_if(exc: ApiError) -> bool:
    """A POST is retried only when the API cannot have acted on it."""
    return exc.transient and (exc.status == 429 or not exc.sent)


def _no_notice(_exc: ApiError) -> None:
    return


class ApiClient:
    """The buildlogs REST API. ``transport`` is injectable (``httpx.MockTransport`` in tests);
    ``retry`` is the policy for transient errors; ``on_outage`` hears of each outage once."""

    def __init__(
        self,
        api_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        credentials: Any = None,
        retry: RetryPolicy | None = None,
        on_outage: Callable[[ApiError], None] = _no_notice,
    ) -> None:
        if not api_url:
            raise ApiError(0, "no API URL: pass --api or set BUILDLOGS_API_URL")
        if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).hostname:
            raise ApiError(0, f"the API URL must be an http:// or https:// URL, not {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.on_outage = on_outage
        self._http = httpx.Client(
            transport=transport,
            auth=SigV4(credentials),
            timeout=HTTP_TIMEOUT,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one request, and the same request retried -------------------------------------------

    def send(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One request; the JSON object the API answered, or :class:`ApiError`."""
        url = self.api_url + path
        params = {name: value for name, value in (query or {}).items() if value is not None}
        try:
            response = self._http.request(method, url, json=body, params=params or None)
        except httpx.ConnectError as exc:
            if is_local(url):
                raise ApiError(
                    0,
                    f"cannot reach the local API at {self.api_url} ({_reason(exc)}): is it running?",
                    network=True,
                    refused_locally=True,
                    sent=False,
                ) from None
            raise ApiError(0, f"cannot reach the API: {_reason(exc)}", network=True, sent=False) from None
        except httpx.TransportError as exc:  # timeouts, resets, protocol errors
            raise ApiError(0, f"cannot reach the API: {_reason(exc)}", network=True) from None
        return _payload(method, path, response)

    def request(
        self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """:meth:`send` under the retry policy (a POST only when it cannot have been acted on)."""
        retry_if = _post_retry_if if method == "POST" else (lambda exc: exc.transient)
        return self.retry.call(lambda: self.send(method, path, body, query), self.on_outage, retry_if)

    # -- the routes -----------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """POST /builds → ``{build_id, status_url, logs_url}``."""
        return self.request("POST", "/builds", dict(spec))

    def status(self, build_id: str) -> dict[str, Any]:
        """GET /builds/{id} → status, stages, preview_url, archive."""
        return self.request("GET", f"/builds/{quote(build_id, safe='')}")

    def builds(self, *, limit: int = 20, status: str | None = None, next_token: str | None = None) -> dict[str, Any]:
        """GET /builds → ``{builds, next}``, newest first."""
        return self.request("GET", "/builds", query={"limit": limit, "status": status, "next": next_token})

    def cancel(self, build_id: str) -> dict[str, Any]:
        """POST /builds/{id}/cancel → ``{build_id, status: ABORTING, status_url}``."""
        return self.request("POST", f"/builds/{quote(build_id, safe='')}/cancel")

    def logs(
        self,
        build_id: str,
        after: str,
        *,
        wait: int = LONG_POLL_SECONDS,
        limit: int = PAGE_LIMIT,
        phase: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """GET /builds/{id}/logs → ``{entries, next, done}`` (long-poll), retried on the same cursor."""
        query = {"after": after, "limit": limit, "wait": wait, "phase": phase, "source": source}

        def page() -> dict[str, Any]:
            result = self.send("GET", f"/builds/{quote(build_id, safe='')}/logs", query=query)
            if not isinstance(result.get("entries"), list) or "next" not in result or "done" not in result:
                raise ApiError(200, "the logs response lacks entries/next/done")
            return result

        return self.retry.call(page, self.on_outage)


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text


def _payload(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    try:
        payload = json.loads(response.content or b"null")
    except ValueError:
        payload = None
    if response.status_code >= 400:
        raise _api_error(response, payload)
    if not isinstance(payload, dict):  # a proxy's HTML page, an empty body: a clear error, no traceback
        raise ApiError(response.status_code, f"the API answered {method} {path} with something that is not JSON")
    return payload


def _api_error(response: httpx.Response, payload: Any) -> ApiError:
    """The API's ``{error, message, field?}`` (and any list of reasons) as an :class:`ApiError`."""
    body = payload if isinstance(payload, dict) else {}
    message = body.get("message")
    if not message:
        message = response.content[:200].decode("utf-8", "replace").strip() or response.reason_phrase
    reasons = tuple(_reasons(body))
    return ApiError(
        response.status_code,
        str(message),
        reasons=reasons,
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def _reasons(body: Mapping[str, Any]) -> list[str]:
    """Every reason of a 400 (the API lists them in ``reasons`` when there are several)."""
    items = body.get("reasons")
    return [str(item) for item in items] if isinstance(items, list) else []


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides

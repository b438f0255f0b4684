"""An in-memory buildlogs API behind ``httpx.MockTransport``: what the CLI's unit tests talk to.

Serves ``GET /builds/{id}/logs`` (pages of ``page_size``; with ``long_poll`` a request waits, on a
condition, for entries after its cursor), ``GET /builds/{id}``, ``GET /builds``, ``POST /builds``
and ``POST /builds/{id}/cancel``. Each request first consumes one planned failure while any remain:
an HTTP status (answered with the API's error body), or an exception the transport raises.
"""

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "http://127.0.0.1:9"  # localhost: unsigned; never reached (the transport is in memory)
BUILD = "b1"
TS = 1_700_000_000_000


def entry(seq: int, text: str, *, source: str = "stdout", phase: str = "build", **extra: Any) -> dict[str, Any]:
    """One log entry as the API returns it (id ``<TS>-<seq>``)."""
    return {"id": f"{TS}-{seq}", "ts": TS + seq, "source": source, "text": text, "phase": phase, **extra}


def end(seq: int, status: str, *, phase: str = "build") -> dict[str, Any]:
    return entry(seq, f"end of log: {status}", source="system", phase=phase, event="end", status=status)


def log(count: int, status: str) -> list[dict[str, Any]]:
    """``count - 1`` stdout lines ``line 1``… then the end entry."""
    return [*(entry(i, f"line {i}") for i in range(1, count)), end(count, status)]


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e["id"]) for e in entries]


@dataclass
class FakeApi:
    entries: list[dict[str, Any]] = field(default_factory=list)
    failures: list[int | BaseException] = field(default_factory=list)
    page_size: int = 2
    build_id: str = BUILD
    status: str = "SUCCEEDED"
    stages: list[dict[str, Any]] = field(default_factory=list)
    preview_url: str | None = None
    archive: dict[str, Any] | None = None
    error_body: dict[str, Any] | None = None  # the body of planned HTTP failures (default: a 503's)
    retry_after: str | None = None
    long_poll: float = 0.0  # seconds a logs request waits for new entries (threaded tests only)
    requests: list[httpx.Request] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def publish(self, *new: dict[str, Any]) -> None:
        """Append entries (a build writing its log) and wake long-polls."""
        with self._changed:
            self.entries.extend(new)
            self._changed.notify_all()

    @property
    def cursors(self) -> list[str]:
        """The ``after`` of every logs request, in order."""
        return [
            request.url.params.get("after", "0-0") for request in self.requests if request.url.path.endswith("/logs")
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, BaseException):
                raise failure
            body = self.error_body or {"error": "service_unavailable", "message": f"planned {failure}"}
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx.Response(failure, json=body, headers=headers)
        path, method = request.url.path, request.method
        path = path[path.find("/builds") :] if "/builds" in path else path  # under a stage: /prod/builds
        prefix = f"/builds/{self.build_id}"
        if method == "POST" and path == "/builds":
            self.submitted.append(json.loads(request.content))
            return httpx.Response(
                202, json={"build_id": self.build_id, "status_url": prefix, "logs_url": f"{prefix}/logs"}
            )
        if method == "GET" and path == "/builds":
            return httpx.Response(200, json={"builds": [self.build_item()], "next": None})
        if not path.startswith(prefix):
            return httpx.Response(404, json={"error": "not_found", "message": f"no build {path.split('/')[2]}"})
        if method == "POST" and path == f"{prefix}/cancel":
            self.cancelled.append(self.build_id)
            return httpx.Response(202, json={"build_id": self.build_id, "status": "ABORTING", "status_url": prefix})
        if path == f"{prefix}/logs":
            return httpx.Response(200, json=self.page(request.url.params))
        if path == prefix:
            return httpx.Response(200, json=self.status_body())
        return httpx.Response(404, json={"error": "not_found", "message": "no such route"})

    def page(self, params: httpx.QueryParams) -> dict[str, Any]:
        after = params.get("after", "0-0")
        phase, source = params.get("phase"), params.get("source")
        with self._changed:
            self._changed.wait_for(lambda: self._after(after) or self._ended(), timeout=self.long_poll)
            rest = self._after(after)
            page = rest[: self.page_size]
            done = self._ended() and len(rest) <= self.page_size
        cursor = str(page[-1]["id"]) if page else after
        kept = [e for e in page if phase in (None, e["phase"]) and source in (None, e["source"])]
        return {"entries": kept, "next": cursor, "done": done}

    def _after(self, after: str) -> list[dict[str, Any]]:
        known = ids(self.entries)
        return self.entries[known.index(after) + 1 :] if after in known else list(self.entries)

    def _ended(self) -> bool:
        return any(e.get("event") == "end" for e in self.entries)

    def status_body(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "status": self.status,
            "started_at": "2023-11-14T22:13:20+00:00",
            "stopped_at": "2023-11-14T22:14:25.500000+00:00",
            "stages": self.stages,
            "preview_url": self.preview_url,
            "archive": self.archive,
            "logs_url": f"/builds/{self.build_id}/logs",
        }

    def build_item(self) -> dict[str, Any]:
        body = self.status_body()
        return {key: body[key] for key in ("build_id", "status", "started_at", "stopped_at", "logs_url")} | {
            "status_url": f"/builds/{self.build_id}"
        }

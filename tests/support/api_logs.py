"""Helpers of the API's log route tests: a dead Redis for 503s, scripted logs of many lines."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from buildlogs.api.app import app
from buildlogs.api.deps import deps
from buildlogs.settings import Settings
from tests.support.api import rest_event


@dataclass
class RawResponse:
    """A resolver response as a client sees it: status, headers (case-insensitive names), text body."""

    status: int
    headers: dict[str, str]
    text: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.text)


def raw_call(path: str, headers: dict[str, str] | None = None) -> RawResponse:
    """GET ``path`` through the resolver in-process (moto and Redis as set up by ``moto_api``)."""
    result = app.resolve(rest_event("GET", path, headers=headers), None)  # type: ignore[arg-type]
    merged = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = ", ".join(str(value) for value in values)
    body = result.get("body") or ""
    text = base64.b64decode(body).decode("utf-8") if result.get("isBase64Encoded") else body
    return RawResponse(int(result["statusCode"]), merged, text)


def _dead_redis(_settings: Settings) -> Redis:
    return Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


@contextmanager
def redis_down() -> Iterator[None]:
    """The API's Redis refuses connections while inside (deps' factory restored afterwards)."""
    factory = deps.redis_factory
    deps.redis_factory = _dead_redis
    try:
        yield
    finally:
        deps.redis_factory = factory


def numbered_lines(count: int, phase: str = "build") -> list[tuple[str, str, dict[str, Any]]]:
    """A write_log script: one stage of ``count`` numbered stdout lines, then the end entry."""
    return [
        ("stage", phase, {}),
        *(("stdout", f"line {index}", {}) for index in range(count)),
        ("end_stage", "", {"exit_code": 0}),
        ("event", "end of log: SUCCEEDED", {"event": "end", "status": "SUCCEEDED"}),
    ]

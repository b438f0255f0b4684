"""Helpers of the end-to-end tests: the examples as specs, and the three views of one log."""

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from redis.asyncio import Redis

from buildlogs.client.local_run import LocalStack
from buildlogs.client.project import load_spec
from buildlogs.keys import logs_key
from buildlogs.pipeline.models import BuildSpec
from buildlogs.stream.entries import entry_record
from tests.support.sandbox import free_port

# moto really sleeps for Retry intervals: the smallest the stack allows (the same CDK context key).
FAST_RETRIES = {"buildlogs:retryIntervalSeconds": 1}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **changes: Any) -> BuildSpec:
    """An example's spec on a free port (tests may run beside a developer's `make run`)."""
    return load_spec(EXAMPLES / name).model_copy(update={"port": free_port(), **changes})


def stream_records(redis_url: str, build_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            return [entry_record(i, f) for i, f in await client.xrange(logs_key(build_id))]
        finally:
            await client.aclose()

    return asyncio.run(read())


def api_records(api_url: str, build_id: str) -> list[dict[str, Any]]:
    """Every entry through GET /builds/{id}/logs, page by page (small pages exercise the cursor)."""
    records: list[dict[str, Any]] = []
    cursor = "0-0"
    for _ in range(1000):
        with urlopen(f"{api_url}builds/{build_id}/logs?after={cursor}&limit=7") as response:
            page = json.loads(response.read())
        # The API spells an absent event as null; the archive's schema leaves it out.
        records.extend({k: v for k, v in entry.items() if v is not None} for entry in page["entries"])
        cursor = page["next"]
        if page["done"]:
            return records
    pytest.fail("the API never said done")


def archive_records(stack: LocalStack, build_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stack.archive_path(build_id).read_text().splitlines()]


def texts(records: list[dict[str, Any]], **match: str) -> list[str]:
    return [r["text"] for r in records if all(r.get(k) == v for k, v in match.items())]


def stages_started(records: list[dict[str, Any]]) -> list[str]:
    return [r["phase"] for r in records if r.get("event") == "stage_start"]


def build_id_in(notices: str) -> str:
    """The build id `buildlogs run` announces on stderr ("build <id> on the local API <url>")."""
    found = re.search(r"^build (\S+) on the local API", notices, re.MULTILINE)
    assert found, notices
    return found.group(1)


def post_build(api_url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /builds`` through the local API: the status code and the JSON answer (errors too)."""
    request = Request(
        f"{api_url}builds", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def get_json(url: str) -> dict[str, Any]:
    with urlopen(url, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def fetch_text(url: str) -> str:
    with urlopen(url, timeout=10) as response:
        return str(response.read().decode())

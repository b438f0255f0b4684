"""Helpers of the API and CLI tests: the API on moto (Step Functions, S3) and a real Redis, REST events."""

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import redis as sync_redis
from moto import mock_aws
from redis.asyncio import Redis

from buildlogs.api.app import app
from buildlogs.api.deps import deps
from buildlogs.archive.archiver import archive_logs
from buildlogs.client import local_api
from buildlogs.keys import logs_key, meta_key
from buildlogs.settings import Settings
from buildlogs.stream.streamer import LogStreamer

REGION = "us-east-1"
SOURCES = "buildlogs-sources-test"
ARCHIVE = "buildlogs-archive-test"
PASS_MACHINE = json.dumps({"StartAt": "Provision", "States": {"Provision": {"Type": "Pass", "End": True}}})


def rest_event(
    method: str, path: str, *, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event (the local API's own builder), JSON content by default."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return local_api.rest_event(
        method, path, body=data, headers={"content-type": "application/json", **(headers or {})}
    )


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def raw(self) -> str:
        return json.dumps(self.body)


@dataclass
class Api:
    """The resolver driven in-process, with moto clients and the real Redis."""

    sfn: Any
    s3: Any
    state_machine_arn: str
    settings: Settings

    def call(self, method: str, path: str, body: Any = None, *, raw: str | None = None) -> ApiResponse:
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        result = app.resolve(rest_event(method, path, body=payload), None)  # type: ignore[arg-type]
        text = result.get("body") or ""
        parsed = json.loads(text) if text else None
        return ApiResponse(int(result["statusCode"]), parsed, dict(result.get("headers") or {}))


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid BuildSpec body."""
    return {"files": {"index.js": "console.log(1)\n"}, "start": "node index.js", "port": 3000, **overrides}


@contextmanager
def moto_api(redis_url: str) -> Iterator[Api]:
    """The API with moto (state machine, sources and archive buckets) and the real Redis."""
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=SOURCES)
        s3.create_bucket(Bucket=ARCHIVE)
        arn = sfn.create_state_machine(
            name="buildlogs-test", definition=PASS_MACHINE, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        settings = Settings(
            redis_url=redis_url, state_machine_arn=arn, sources_bucket=SOURCES, log_archive_bucket=ARCHIVE
        )
        deps.settings, deps.sfn, deps.s3 = settings, sfn, s3
        try:
            yield Api(sfn, s3, arn, settings)
        finally:
            deps.reset()


@contextmanager
def serve_api() -> Iterator[str]:
    """The resolver behind the local API's HTTP adapter on 127.0.0.1; yields the root URL (no slash)."""
    with local_api.serve(app.resolve) as url:
        yield url.rstrip("/")


async def _write_log(redis_url: str, build_id: str, script: list[tuple[str, str, dict[str, Any]]]) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        streamer = LogStreamer(client, build_id, "provision", flush_interval_ms=0)
        for kind, text, fields in script:
            if kind == "stage":
                await streamer.stage(text)
            elif kind == "end_stage":
                await streamer.end_stage(**fields)
            elif kind == "event":
                await streamer.write_event(text, **fields)
            else:
                await (streamer.on_stderr if kind == "stderr" else streamer.on_stdout)(text + "\n")
        await streamer.close()
    finally:
        await client.aclose()


def write_log(redis_url: str, build_id: str, script: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Write a scripted log (``stage``/``end_stage``/``event``/``stdout``/``stderr`` steps) with LogStreamer."""
    asyncio.run(_write_log(redis_url, build_id, script))


async def _archive_and_expire(redis_url: str, s3: Any, build_id: str, status: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await archive_logs(client, s3, ARCHIVE, build_id, status, ttl_seconds=600)
        await client.delete(logs_key(build_id), meta_key(build_id))  # as if the TTL had passed
    finally:
        await client.aclose()


def archive_and_expire(redis_url: str, s3: Any, build_id: str, status: str = "SUCCEEDED") -> None:
    """Archive the build's stream (the archiver's own code), then delete it: the stream has expired."""
    asyncio.run(_archive_and_expire(redis_url, s3, build_id, status))


def delete_stream(redis_url: str, build_id: str) -> None:
    sync_redis.Redis.from_url(redis_url).delete(logs_key(build_id), meta_key(build_id))

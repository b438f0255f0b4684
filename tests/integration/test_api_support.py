"""Helpers shared by the API tests: moto Step Functions + S3, API Gateway REST events. No tests here."""

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from buildlogs.api.app import app
from buildlogs.api.deps import deps
from buildlogs.settings import Settings

REGION = "us-east-1"
SOURCES = "buildlogs-sources-test"
ARCHIVE = "buildlogs-archive-test"
PASS_MACHINE = json.dumps({"StartAt": "Provision", "States": {"Provision": {"Type": "Pass", "End": True}}})


def rest_event(
    method: str, path: str, *, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event (the shape the API Lambda receives), query in ``path``."""
    split = urlsplit(path)
    multi = parse_qs(split.query, keep_blank_values=True)
    encoded = isinstance(body, bytes)
    return {
        "resource": split.path,
        "path": split.path,
        "httpMethod": method,
        "headers": {"content-type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": "test-request",
            "stage": "prod",
            "path": f"/prod{split.path}",
            "httpMethod": method,
            "resourcePath": split.path,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "isBase64Encoded": encoded,
    }


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


@pytest.fixture
def api(redis_url: str) -> Iterator[Api]:
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


__all__ = ["ARCHIVE", "REGION", "SOURCES", "Api", "ApiResponse", "api", "rest_event", "spec"]

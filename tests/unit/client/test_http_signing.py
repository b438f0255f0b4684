"""The CLI's HTTP: SigV4 for a deployed API, unsigned on localhost (httpx.MockTransport: no network)."""

import io
import re
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from buildlogs.client.cli import main
from buildlogs.client.http import ApiClient, ApiError, is_local, region_for

SIGNATURE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/execute-api/aws4_request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


class Recorder:
    """A transport handler that records requests and answers a fixed body."""

    def __init__(self, body: bytes = b'{"build_id": "b1", "status_url": "/builds/b1", "logs_url": "/builds/b1/logs"}'):
        self.requests: list[httpx.Request] = []
        self.body = body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(202, content=self.body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only (the standard chain's first link); no IMDS, no files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _expected_signature(request: httpx.Request, signed_headers: list[str]) -> str:
    """What AWS computes for ``request``: SigV4 over its method, URL, signed headers and body."""
    aws = AWSRequest(
        method=request.method,
        url=str(request.url),
        data=request.content,
        headers={name: request.headers[name] for name in signed_headers},
    )
    aws.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", SECRET, "session-token-example"), "execute-api", "eu-west-1")
    canonical = signer.canonical_request(aws)
    return signer.signature(signer.string_to_sign(aws, canonical), aws)


@pytest.mark.usefixtures("fake_credentials")
def test_a_deployed_api_gets_sigv4_for_execute_api_in_the_url_region() -> None:
    # GIVEN a client of a deployed API and credentials in the standard chain
    recorder = Recorder()
    client = ApiClient("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", transport=recorder.transport())
    # WHEN it submits a build
    client.submit({"start": "node index.js", "port": 3000})
    # THEN the request carries a SigV4 Authorization for execute-api in eu-west-1
    (request,) = recorder.requests
    assert str(request.url) == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/builds"
    match = SIGNATURE.match(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    assert match["region"] == "eu-west-1"
    signed = match["headers"].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["X-Amz-Date"])
    assert request.headers["X-Amz-Security-Token"] == "session-token-example"
    assert request.content == b'{"start":"node index.js","port":3000}'
    # AND the signature is the one AWS computes over what was sent (body and query included)
    assert match["signature"] == _expected_signature(request, signed)


@pytest.mark.usefixtures("fake_credentials")
def test_a_signed_log_read_covers_its_query() -> None:
    recorder = Recorder(b'{"entries": [], "next": "0-0", "done": true}')
    client = ApiClient("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", transport=recorder.transport())
    client.logs("b1", "1700000000000-5", wait=20, phase="build")
    (request,) = recorder.requests
    assert request.url.params["after"] == "1700000000000-5"
    match = SIGNATURE.match(request.headers["Authorization"])
    assert match
    assert match["signature"] == _expected_signature(request, match["headers"].split(";"))


@pytest.mark.usefixtures("fake_credentials")
@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.1:9000/api"])
def test_a_local_api_is_called_unsigned(url: str) -> None:
    recorder = Recorder()
    ApiClient(url, transport=recorder.transport()).submit({"start": "x", "port": 1})
    (request,) = recorder.requests
    assert "Authorization" not in request.headers
    assert not any(name.lower().startswith("x-amz") for name in request.headers)


def test_without_credentials_a_deployed_api_is_an_error_not_an_unsigned_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    recorder = Recorder()
    client = ApiClient("https://abc.execute-api.us-east-2.amazonaws.com/prod", transport=recorder.transport())
    with pytest.raises(ApiError, match="no AWS credentials") as caught:
        client.submit({})
    assert recorder.requests == []
    assert not caught.value.transient


def test_hosts_and_regions() -> None:
    assert is_local("http://localhost:1/x")
    assert is_local("http://127.0.0.1:1")
    assert is_local("http://[::1]:8000/")
    assert not is_local("https://localhost.example.com")
    assert region_for("https://x.execute-api.ap-southeast-2.amazonaws.com/prod") == "ap-southeast-2"


def test_an_api_error_is_printed_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that answers 409 with its JSON error
    def conflict(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": "conflict", "message": "build b1 already exists with another spec"})

    spec = tmp_path / "spec.json"
    spec.write_text('{"build_id": "b1", "start": "x", "port": 1}')
    # WHEN submit runs THEN it exits 3 with the API's message
    code = main(["--api", "http://localhost:1", "submit", str(spec)], transport=httpx.MockTransport(conflict))
    assert code == 3
    assert capsys.readouterr().err.splitlines() == ["buildlogs: HTTP 409: build b1 already exists with another spec"]


def test_no_api_url_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BUILDLOGS_API_URL", raising=False)
    assert main(["tail", "b1"], out=io.StringIO()) == 3
    assert "BUILDLOGS_API_URL" in capsys.readouterr().err

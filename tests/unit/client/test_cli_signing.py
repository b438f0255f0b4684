"""The CLI's transport: SigV4 for a deployed API, unsigned on localhost (intercepted: no network)."""

import re
from pathlib import Path

import pytest

from buildlogs.client.cli import ApiError, Client, HttpRequest, HttpResponse, is_local, main, region_for

SIGNATURE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/(?P<region>[a-z0-9-]+)/execute-api/aws4_request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=[0-9a-f]{64}$"
)


class Recorder:
    """A transport that records requests and answers a fixed body."""

    def __init__(self, body: bytes = b'{"build_id": "b1", "status_url": "/builds/b1", "logs_url": "/builds/b1/logs"}'):
        self.requests: list[HttpRequest] = []
        self.body = body

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return HttpResponse(202, self.body)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only (the standard chain's first link); no IMDS, no files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.usefixtures("fake_credentials")
def test_a_deployed_api_gets_sigv4_for_execute_api_in_the_url_region() -> None:
    # GIVEN a client of a deployed API and credentials in the standard chain
    transport = Recorder()
    client = Client("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", transport)
    # WHEN it submits a build
    client.submit({"start": "node index.js", "port": 3000})
    # THEN the request carries a SigV4 Authorization for execute-api in eu-west-1
    (request,) = transport.requests
    assert request.url == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/builds"
    match = SIGNATURE.match(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    assert match["region"] == "eu-west-1"
    assert {"host", "x-amz-date"} <= set(match["headers"].split(";"))
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["X-Amz-Date"])
    assert request.headers["X-Amz-Security-Token"] == "session-token-example"
    assert request.body == b'{"start": "node index.js", "port": 3000}'


@pytest.mark.usefixtures("fake_credentials")
@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.1:9000/api"])
def test_a_local_api_is_called_unsigned(url: str) -> None:
    transport = Recorder()
    Client(url, transport).submit({"start": "x", "port": 1})
    (request,) = transport.requests
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
    transport = Recorder()
    with pytest.raises(ApiError, match="no AWS credentials"):
        Client("https://abc.execute-api.us-east-2.amazonaws.com/prod", transport).submit({})
    assert transport.requests == []


def test_hosts_and_regions() -> None:
    assert is_local("http://localhost:1/x")
    assert is_local("http://127.0.0.1:1")
    assert not is_local("https://localhost.example.com")
    assert region_for("https://x.execute-api.ap-southeast-2.amazonaws.com/prod") == "ap-southeast-2"


def test_an_api_error_is_printed_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an API that answers 409 with its JSON error
    def conflict(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(409, b'{"error": "conflict", "message": "build b1 already exists with another spec"}')

    spec = tmp_path / "spec.json"
    spec.write_text('{"build_id": "b1", "start": "x", "port": 1}')
    # WHEN submit runs THEN it exits 3 with the API's message
    assert main(["--api", "http://localhost:1", "submit", str(spec)], transport=conflict) == 3
    assert "HTTP 409: build b1 already exists with another spec" in capsys.readouterr().err


def test_no_api_url_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BUILDLOGS_API_URL", raising=False)
    assert main(["tail", "b1"]) == 3
    assert "BUILDLOGS_API_URL" in capsys.readouterr().err

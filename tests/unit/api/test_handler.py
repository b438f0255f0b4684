"""The API Lambda handler: thin, never loads e2b, answers through the resolver."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.support.api import rest_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HANDLER = Path(__file__).resolve().parents[3] / "functions" / "api" / "handler.py"


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_handler_under_test", HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context() -> SimpleNamespace:
    return SimpleNamespace(
        function_name="api",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:api",
        aws_request_id="req-1",
    )


def test_importing_the_handler_never_imports_e2b() -> None:
    # GIVEN a fresh interpreter WHEN it imports the handler THEN e2b is not loaded
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('h', {str(HANDLER)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert callable(module.lambda_handler)\n"
        "print(sorted(name for name in sys.modules if name == 'e2b' or name.startswith('e2b.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_handler_answers_through_the_resolver_with_json_errors() -> None:
    handler = _load_handler()
    response = handler.lambda_handler(rest_event("GET", "/nowhere"), _context())
    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"error": "not_found", "message": "no such route"}


def test_the_handler_serves_the_openapi_document() -> None:
    handler = _load_handler()
    response = handler.lambda_handler(rest_event("GET", "/openapi.json"), _context())
    assert response["statusCode"] == 200
    document = json.loads(response["body"])
    assert document["info"]["title"] == "buildlogs"
    assert "/builds/{build_id}/logs" in document["paths"]

"""One synthesized stack per session (cdk.json context, as the CLI sees it; layer bundling skipped)."""

from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.builder import build_app
from infra.constants import API_FUNCTION, ARCHIVER_FUNCTION, FUNCTIONS_DIR, STAGE_FUNCTION
from tests.support.synth import Synth

# Small retry intervals, as the ASL tests in moto need; the rest is cdk.json's context.
TEST_CONTEXT = {"buildlogs:layerBundling": "skip", "buildlogs:retryIntervalSeconds": 1}
# The other cache engine and archiving off: the settings that change the template's shape.
ALT_CONTEXT = {**TEST_CONTEXT, "buildlogs:cacheEngine": "valkey", "buildlogs:archiveEnabled": "false"}


def _require_handlers() -> None:
    missing = [
        str(FUNCTIONS_DIR / name / "handler.py")
        for name in (STAGE_FUNCTION, ARCHIVER_FUNCTION, API_FUNCTION)
        if not (FUNCTIONS_DIR / name / "handler.py").is_file()
    ]
    if missing:
        pytest.fail(f"the infra tests synthesize every function's code asset; missing: {', '.join(missing)}")


def _synth(context: dict[str, Any], outdir: Path) -> Synth:
    _require_handlers()
    _app, stack = build_app(context, outdir=str(outdir))
    template = Template.from_stack(stack)
    return Synth(stack=stack, template=template, json=template.to_json())


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(TEST_CONTEXT, tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="session")
def alt_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return _synth(ALT_CONTEXT, tmp_path_factory.mktemp("cdk-out-alt"))

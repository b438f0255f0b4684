"""cdk-nag AwsSolutions: no unsuppressed error (nor warning), every suppression carries a reason, and
the checks do run (a positive control: app.py reports a deliberately non-compliant bucket)."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_cdk import App, Aspects, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra import builder
from infra.constants import ROOT
from tests.support.synth import Synth


def _findings(synth: Synth, level: str) -> list[str]:
    annotations = Annotations.from_stack(synth.stack)
    finder = annotations.find_error if level == "error" else annotations.find_warning
    return [f"{m.id}: {str(m.entry.data)[:160]}" for m in finder("*", Match.string_like_regexp("AwsSolutions-.*"))]


def test_no_unsuppressed_cdk_nag_errors(synth: Synth) -> None:
    assert _findings(synth, "error") == []


def test_no_unsuppressed_cdk_nag_warnings(synth: Synth) -> None:
    assert _findings(synth, "warning") == []


def test_alternative_settings_are_nag_clean_too(alt_synth: Synth) -> None:
    assert _findings(alt_synth, "error") == []


def test_every_suppression_names_its_rule_and_a_reason(synth: Synth) -> None:
    suppressions = [
        s
        for resource in synth.json["Resources"].values()
        for s in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions
    for suppression in suppressions:
        assert suppression["id"].startswith("AwsSolutions-"), json.dumps(suppression)
        assert len(suppression["reason"]) >= 40, json.dumps(suppression)


# -- positive control: the checks really run, applied the way app.py applies them ----------------


class _NonCompliantStack(Stack):
    """Stands in for BuildlogsStack: one bucket without SSL enforcement nor access logs (S10, S1)."""

    def __init__(self, scope: Construct, construct_id: str, **_kwargs: Any) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(self, "NoSslBucket")


def _load_cdk_app_module() -> ModuleType:
    """app.py (cdk.json's ``python3 app.py``), imported as a module without running ``main``."""
    spec = importlib.util.spec_from_file_location("buildlogs_cdk_app", ROOT / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nag_errors(stack: Stack, rule: str) -> list[str]:
    return [m.id for m in Annotations.from_stack(stack).find_error("*", Match.string_like_regexp(f"{rule}:.*"))]


def test_the_checked_app_carries_the_aws_solutions_aspect(synth: Synth) -> None:
    # GIVEN the app the nag-clean tests above synthesized (built by build_app, as app.py builds it)
    app = synth.stack.node.root
    # WHEN its aspects are listed
    aspects = Aspects.of(app).all
    # THEN AwsSolutionsChecks is among them: "no finding" means "checked and clean"
    assert any(isinstance(aspect, AwsSolutionsChecks) for aspect in aspects)


def test_app_py_reports_an_aws_solutions_error_for_a_non_compliant_resource(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN app.py's main, whose build_app builds a throwaway stack with a bucket that allows plain HTTP
    module = _load_cdk_app_module()
    built: list[tuple[App, Stack]] = []

    def recording_build_app(*args: Any, **kwargs: Any) -> tuple[App, Stack]:
        built.append(builder.build_app(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(builder, "BuildlogsStack", _NonCompliantStack)
    monkeypatch.setattr(builder, "add_suppressions", lambda _stack: None)  # they name BuildlogsStack's parts
    monkeypatch.setattr(module, "build_app", recording_build_app)
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    # WHEN app.py synthesizes
    module.main()
    # THEN cdk-nag reported the bucket's missing SSL enforcement as an AwsSolutions error
    ((_app, stack),) = built
    assert isinstance(stack, _NonCompliantStack)
    assert _nag_errors(stack, "AwsSolutions-S10") == [f"/{stack.stack_name}/NoSslBucket/Resource"]


def test_without_the_checks_the_same_stack_has_no_finding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN the same throwaway stack built with nag off (what the control above must tell apart)
    monkeypatch.setattr(builder, "BuildlogsStack", _NonCompliantStack)
    monkeypatch.setattr(builder, "add_suppressions", lambda _stack: None)
    # WHEN it synthesizes
    _app, stack = builder.build_app(outdir=str(tmp_path), nag=False)
    # THEN there is no AwsSolutions annotation at all
    assert _nag_errors(stack, "AwsSolutions-S10") == []

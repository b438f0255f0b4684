"""cdk-nag AwsSolutions: no unsuppressed error (nor warning), and every suppression carries a reason."""

import json

from aws_cdk.assertions import Annotations, Match

from tests.infra.conftest import Synth


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

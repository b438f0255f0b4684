"""Layer bundling (no Docker, no pip in tests) and the typed settings from CDK context."""

import json
from pathlib import Path

import pytest

from infra import layer
from infra.config import CONTEXT_PREFIX, StackSettings, cdk_json_context
from infra.constants import CDK_JSON, LAYER_PACKAGE_DIR, LAYER_REQUIREMENTS, ROOT


def test_pip_command_fetches_lambda_wheels_only() -> None:
    command = layer.pip_command(Path("/out/python"))
    assert command[1:4] == ["-m", "pip", "install"]
    assert "--only-binary=:all:" in command
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == ["manylinux2014_aarch64", "manylinux_2_28_aarch64"]  # pyqwest needs glibc 2.28
    assert command[command.index("--python-version") + 1] == layer.PYTHON_VERSION
    assert command[command.index("--implementation") + 1] == "cp"
    assert command[command.index("-r") + 1] == str(LAYER_REQUIREMENTS)
    assert command[command.index("--target") + 1] == "/out/python"


def test_runtime_architecture_and_pip_target_agree() -> None:
    assert layer.RUNTIME.name == f"python{layer.PYTHON_VERSION}"
    assert layer.ARCHITECTURE.name == "arm64"
    assert all(p.endswith("_aarch64") for p in layer.PLATFORMS)


def test_inputs_hash_tracks_mode_and_sources() -> None:
    assert layer.inputs_hash("pip") == layer.inputs_hash("pip")
    assert layer.inputs_hash("pip") != layer.inputs_hash("skip")
    assert any(p.name == "stages.py" for p in layer._package_files())
    assert not any("__pycache__" in p.parts for p in layer._package_files())


def test_skip_bundle_ships_the_package_and_is_cached(tmp_path: Path) -> None:
    bundle = layer.build_layer("skip", cache_dir=tmp_path)
    assert (bundle / "python" / "buildlogs" / "pipeline" / "stages.py").is_file()
    assert not list((bundle / "python").rglob("__pycache__"))
    assert layer.build_layer("skip", cache_dir=tmp_path) == bundle  # second call: the cache


def test_layer_asset_is_attached_and_compatible(synth) -> None:  # type: ignore[no-untyped-def]
    (resource,) = synth.resources("AWS::Lambda::LayerVersion").values()
    assert resource["Properties"]["CompatibleRuntimes"] == [layer.RUNTIME.name]
    assert resource["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_cdk_json_runs_the_app_and_its_context_parses() -> None:
    data = json.loads(CDK_JSON.read_text())
    assert data["app"] == "python3 app.py"
    context = cdk_json_context()
    ours = {k for k in context if k.startswith(CONTEXT_PREFIX)}
    settings = StackSettings.from_context(context)
    known = {
        CONTEXT_PREFIX + k for k in ("envName", "natGateways", "cacheEngine", "logRetentionDays", "archiveEnabled")
    }
    assert known <= ours
    assert settings.layer_bundling == "pip"  # `make synth` bundles for real
    assert settings.cache_engine == "serverless-valkey"
    # no typo'd keys: every buildlogs: key maps to a setting
    rebuilt = StackSettings.from_context({k: context[k] for k in ours})
    assert rebuilt == settings
    assert len(ours) == len({k for k in ours if k[len(CONTEXT_PREFIX) :] in _camel_fields()})


def _camel_fields() -> set[str]:
    from dataclasses import fields

    from infra.config import _camel

    return {_camel(f.name) for f in fields(StackSettings)}


def test_cli_strings_are_converted() -> None:
    settings = StackSettings.from_context(
        {"buildlogs:natGateways": "2", "buildlogs:archiveEnabled": "false", "buildlogs:retryBackoffRate": "1.5"}
    )
    assert settings.nat_gateways == 2
    assert settings.archive_enabled is False
    assert settings.retry_backoff_rate == 1.5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cacheEngine", "memcached"),
        ("logRetentionDays", "8"),
        ("natGateways", "0"),
        ("archiveEnabled", "maybe"),
        ("archiveTransitionDays", "10"),
        ("envName", "has space"),
    ],
)
def test_invalid_context_is_rejected(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key[:6]):
        StackSettings.from_context({CONTEXT_PREFIX + key: value})


def test_layer_package_is_inside_the_repo() -> None:
    assert LAYER_PACKAGE_DIR.is_relative_to(ROOT)

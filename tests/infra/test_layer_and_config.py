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


def test_inputs_hash_covers_the_shipped_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a package tree with a module, a bytecode cache and the client-only subpackage
    package = tmp_path / "python" / LAYER_PACKAGE_DIR.name
    files = {
        "shipped": package / "pipeline" / "stages.py",
        "cache": package / "pipeline" / "__pycache__" / "stages.cpython-311.pyc",
        "client": package / "client" / "cli.py",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("v1\n")
    monkeypatch.setattr(layer, "LAYER_DIR", tmp_path)
    monkeypatch.setattr(layer, "LAYER_PACKAGE_DIR", package)
    before = layer.inputs_hash("skip")

    # WHEN a bytecode cache or a client module changes THEN the hash does not
    for name in ("cache", "client"):
        files[name].write_text("v2\n")
        assert layer.inputs_hash("skip") == before, name
    (package / "client" / "console.py").write_text("new\n")
    assert layer.inputs_hash("skip") == before

    # WHEN a shipped module changes, or one is added THEN it does
    files["shipped"].write_text("v2\n")
    changed = layer.inputs_hash("skip")
    assert changed != before
    (package / "keys.py").write_text("new\n")
    assert layer.inputs_hash("skip") not in {before, changed}


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
    assert ours <= set(StackSettings.context_keys())


def test_context_keys_are_camel_case_field_names() -> None:
    keys = StackSettings.context_keys()
    assert CONTEXT_PREFIX + "natGateways" in keys
    assert CONTEXT_PREFIX + "retryBackoffRate" in keys
    assert len(keys) == len(StackSettings.model_fields)
    assert StackSettings(nat_gateways=2) == StackSettings.from_context({CONTEXT_PREFIX + "natGateways": 2})


def test_unknown_context_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="natGateway: not a setting"):
        StackSettings.from_context({CONTEXT_PREFIX + "natGateway": "2"})
    # keys outside the buildlogs: prefix (CDK feature flags, ...) are not ours
    assert StackSettings.from_context({"@aws-cdk/core:newStyleStackSynthesis": True}) == StackSettings()


def test_retention_days_are_listed_once() -> None:
    from aws_cdk import aws_logs as logs

    from infra.common import retention_days
    from infra.config import LOG_RETENTION, RETENTION_DAYS

    assert tuple(LOG_RETENTION) == RETENTION_DAYS
    assert retention_days(30) == logs.RetentionDays.ONE_MONTH
    assert len(set(LOG_RETENTION.values())) == len(LOG_RETENTION)
    with pytest.raises(ValueError, match="8 days"):
        retention_days(8)


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

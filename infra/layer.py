"""The Lambda layer: the ``buildlogs`` package plus its pinned third-party deps, bundled without Docker.

Architecture: ARM64 (Graviton, cheaper per GB-second). Checked with ``pip download --platform
manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --only-binary=:all:`` for CPython 3.12,
3.13 and 3.14: every pinned dependency has an aarch64 wheel — e2b's ``pyqwest`` (manylinux_2_28,
i.e. glibc 2.28+), ``hiredis``, ``orjson`` and ``pydantic-core``; the rest are pure Python.

Runtime: python3.14. ``pyqwest`` needs glibc 2.28, so python3.12+ (Amazon Linux 2023, glibc 2.34).
With aws-cdk-lib 2.275, python3.14 is the newest runtime CDK knows, so cdk-nag's AwsSolutions-L1
("latest runtime") passes without a suppression; python3.12/3.13 would need one. The code itself
stays Python 3.11-compatible (it also runs on the developer's 3.11).
"""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import LayerBundling
from infra.constants import BUILD_CACHE_DIR, LAYER_DIR, LAYER_PACKAGE_DIR, LAYER_REQUIREMENTS

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = "3.14"  # pip's --python-version: must match RUNTIME
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")  # must match ARCHITECTURE
BUNDLER_VERSION = "2"  # bump to invalidate every cached bundle
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")
# What runs on a user's machine (the CLI, the local run and its fakeredis): never shipped to Lambda.
CLIENT_ONLY = ("client",)  # subpackages of buildlogs


def _shipped(path: Path) -> bool:
    """Whether a path under the package directory belongs in the layer."""
    parts = path.relative_to(LAYER_PACKAGE_DIR).parts
    return not (parts and parts[0] in CLIENT_ONLY) and not set(parts) & {"__pycache__", ".mypy_cache", ".pytest_cache"}


def _ignored(directory: str, names: list[str]) -> set[str]:
    """copytree's ignore: the usual caches, and the client-only subpackages at the package's top."""
    ignored = set(_IGNORED(directory, names))
    if Path(directory) == LAYER_PACKAGE_DIR:
        ignored |= set(CLIENT_ONLY) & set(names)
    return ignored


def _package_files() -> list[Path]:
    """The package's files the layer ships (its inputs hash covers exactly these)."""
    return sorted(
        path
        for path in LAYER_PACKAGE_DIR.rglob("*")
        if path.is_file() and _shipped(path) and path.suffix not in {".pyc", ".pyo"}
    )


def inputs_hash(bundling: LayerBundling) -> str:
    """A hash of everything the layer is built from: it names the cached bundle and the asset."""
    digest = hashlib.sha256()
    for part in (BUNDLER_VERSION, bundling, RUNTIME.name, PYTHON_VERSION, *PLATFORMS):
        digest.update(part.encode() + b"\0")
    digest.update(LAYER_REQUIREMENTS.read_bytes() + b"\0")
    for path in _package_files():
        digest.update(path.relative_to(LAYER_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def pip_command(target: Path) -> list[str]:
    """The pip install that fetches Lambda-compatible wheels only (never builds, never needs Docker)."""
    command = [sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check", "--no-compile"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return [
        *command,
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "-r",
        str(LAYER_REQUIREMENTS),
        "--target",
        str(target),
    ]


def build_layer(bundling: LayerBundling, cache_dir: Path = BUILD_CACHE_DIR) -> Path:
    """The layer's content (``python/`` inside), built once per inputs hash under ``cache_dir``."""
    key = inputs_hash(bundling)
    bundle = cache_dir / f"layer-{key[:16]}"
    if (bundle / ".complete").exists():
        return bundle
    staging = cache_dir / f".layer-{key[:16]}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    site.mkdir(parents=True)
    if bundling == "pip":
        subprocess.run(pip_command(site), check=True)
    shutil.copytree(LAYER_PACKAGE_DIR, site / LAYER_PACKAGE_DIR.name, ignore=_ignored, dirs_exist_ok=True)
    (staging / ".complete").write_text(key + "\n", encoding="utf-8")
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)
    return bundle


@jsii.implements(ILocalBundling)
class CachedLayerBundling:
    """CDK local bundling: copies the cached bundle (built on first use) into the asset's output dir."""

    def __init__(self, bundling: LayerBundling) -> None:
        self._bundling = bundling

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        bundle = build_layer(self._bundling)
        shutil.copytree(bundle / "python", Path(output_dir) / "python", dirs_exist_ok=True)
        return True


class BuildlogsLayer(Construct):
    """The layer every function uses: ``/opt/python`` holds ``buildlogs`` and its dependencies."""

    def __init__(self, scope: Construct, construct_id: str, *, bundling: LayerBundling) -> None:
        super().__init__(scope, construct_id)
        self.layer = self._build_layer(bundling)

    def _build_layer(self, bundling: LayerBundling) -> lambda_.LayerVersion:
        code = lambda_.Code.from_asset(
            str(LAYER_DIR),
            asset_hash_type=AssetHashType.CUSTOM,
            asset_hash=inputs_hash(bundling),
            bundling=BundlingOptions(
                # never pulled: local bundling always succeeds, so Docker is never used
                image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14:latest"),
                local=CachedLayerBundling(bundling),
            ),
        )
        return lambda_.LayerVersion(
            self,
            "Layer",
            code=code,
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="buildlogs package and its pinned dependencies",
        )

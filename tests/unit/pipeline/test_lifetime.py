"""What an iteration decides from a sandbox's record: is Install needed, which files are manifests."""

import json
import time

import pytest

from buildlogs.pipeline.lifetime import SandboxState, install_changes, install_fingerprint, is_manifest


@pytest.mark.parametrize(
    "path", ["package.json", "web/package-lock.json", "requirements.txt", "requirements-dev.txt", "pyproject.toml"]
)
def test_dependency_manifests_are_recognised(path: str) -> None:
    assert is_manifest(path)


@pytest.mark.parametrize("path", ["src/app.py", "package.json.bak", "docs/requirements.md", "README.md"])
def test_other_files_are_not_manifests(path: str) -> None:
    assert not is_manifest(path)


def test_install_is_needed_only_when_a_manifest_or_the_command_changed() -> None:
    # GIVEN what the last install ran against
    files = {"package.json": "{}", "src/app.js": "v1"}
    recorded = json.dumps(install_fingerprint("npm ci", files))
    # THEN a source change needs no install; a manifest change, a new manifest or a new command do
    assert install_changes(recorded, install_fingerprint("npm ci", {**files, "src/app.js": "v2"})) == []
    assert install_changes(recorded, install_fingerprint("npm ci", {**files, "package.json": '{"a":1}'})) == [
        "package.json changed"
    ]
    assert install_changes(recorded, install_fingerprint("npm ci", {**files, "requirements.txt": ""})) == [
        "requirements.txt changed"
    ]
    assert install_changes(recorded, install_fingerprint("npm i", files)) == ["the install command changed"]
    # AND with no record (a sandbox from before, or Redis lost it) it runs
    assert install_changes(None, install_fingerprint("npm ci", files)) == ["no earlier install in this sandbox"]


def test_a_sandbox_is_served_only_while_kept_and_not_killed() -> None:
    now = time.time()
    kept = SandboxState("sbx", known=True, expires_at=now + 60, serving="b-1")
    assert kept.alive(now)
    assert kept.served(now)
    assert not SandboxState("sbx", known=True, expires_at=now - 1, serving="b-1").served(now)
    assert not SandboxState("sbx", known=True, expires_at=now + 60, serving="b-1", killed=True).alive(now)
    assert not SandboxState("sbx", known=False).alive(now)

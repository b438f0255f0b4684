"""A BuildSpec from what a user has: a project directory (``buildspec.json`` + its files) or a SPEC.json.

A PROJECT_DIR's ``buildspec.json`` holds the commands, port and env (a BuildSpec without
``files``); its other files become the spec's ``files`` — less ``.git``, ``node_modules``,
``.buildlogs``, the spec files themselves (``buildspec.json``, ``spec.json``) and what the
directory's own ``.gitignore`` ignores. A SPEC.json is a whole BuildSpec (``buildlogs submit``
takes the same file). Every problem is a ``ValueError`` whose message says what to fix.
"""

import json
from pathlib import Path
from typing import Any

from pathspec import GitIgnoreSpec
from pydantic import ValidationError

from buildlogs.pipeline.models import BuildSpec

BUILDSPEC_FILE = "buildspec.json"
SPEC_FILE = "spec.json"
ALWAYS_SKIPPED = frozenset({".git", "node_modules", ".buildlogs", "__pycache__"})
SPEC_FILES = frozenset({BUILDSPEC_FILE, SPEC_FILE})


def load_spec(path: Path) -> BuildSpec:
    """The BuildSpec of a project directory or of a SPEC.json file."""
    if path.is_dir():
        return project_spec(path)
    if path.is_file():
        return _validate(_read_json(path), path)
    raise ValueError(f"{path}: no such project directory or spec file")


def project_spec(root: Path) -> BuildSpec:
    """``root/buildspec.json`` plus every project file under ``root`` as the spec's ``files``."""
    config_path = root / BUILDSPEC_FILE
    if not config_path.is_file():
        raise ValueError(f"{root}: a project directory needs a {BUILDSPEC_FILE} (the commands, port and env)")
    config = _read_json(config_path)
    if "files" in config:
        raise ValueError(f"{config_path}: leave out 'files' (they are the directory's other files)")
    return _validate({**config, "files": project_files(root)}, config_path)


def project_files(root: Path) -> dict[str, str]:
    """Relative POSIX path → text of every file that belongs to the project (sorted by path)."""
    ignore_file = root / ".gitignore"
    ignored = GitIgnoreSpec.from_lines(ignore_file.read_text().splitlines()) if ignore_file.is_file() else None
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in ALWAYS_SKIPPED for part in relative.parts) or not path.is_file():
            continue
        name = relative.as_posix()
        if name in SPEC_FILES or (ignored is not None and ignored.match_file(name)):
            continue
        try:
            files[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text (binary files cannot be sent; add it to .gitignore)") from None
    return files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    return data


def _validate(data: dict[str, Any], source: Path) -> BuildSpec:
    try:
        return BuildSpec.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{source}: invalid build spec: {reasons}") from None


# Fields an iteration request carries when they differ from the earlier build's (files aside).
_ITERATION_FIELDS = ("install", "build", "start", "port", "healthcheck_path", "env", "timeouts")


def iteration_request(earlier: BuildSpec, current: BuildSpec, earlier_id: str) -> BuildSpec | None:
    """The iteration build of ``current`` over the SUCCEEDED build ``earlier_id`` (whose spec is ``earlier``):
    only the changed and added files, the deleted paths and the changed fields; ``None`` if nothing changed."""
    files = {path: text for path, text in current.files.items() if earlier.files.get(path) != text}
    deleted = sorted(path for path in earlier.files if path not in current.files)
    changed = {
        name: getattr(current, name) for name in _ITERATION_FIELDS if getattr(current, name) != getattr(earlier, name)
    }
    if not files and not deleted and not changed:
        return None
    return BuildSpec(iterate_from=earlier_id, files=files, deleted=deleted, **changed)

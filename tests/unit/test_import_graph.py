"""What ships to Lambda is only what runs there: no handler imports the client or fakeredis.

``buildlogs.client`` (CLI, console, local run, the embedded fakeredis) runs on a user's machine
only; the layer bundle leaves it out, so a handler that imported it would fail on Lambda. Each
handler is imported the way Lambda does (its file as the top-level module ``handler``) in a fresh
interpreter, with the environment a function has minus Redis, and its ``sys.modules`` is checked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import layer
from infra.constants import FUNCTIONS_DIR, LAYER_PACKAGE_DIR

HANDLERS = ("stage", "archiver", "api")
CLIENT_ONLY = ("buildlogs.client", "fakeredis")

# Imports a module (a file path: as Lambda imports its handler; else a dotted name), prints sys.modules.
_PROBE = """
import importlib, importlib.util, json, sys
target = sys.argv[1]
if target.endswith(".py"):
    spec = importlib.util.spec_from_file_location("handler", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
else:
    importlib.import_module(target)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_modules(target: str, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "PYTHONPATH"}}
    env["POWERTOOLS_METRICS_NAMESPACE"] = "buildlogs"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, target], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"importing {target} failed:\n{result.stderr[-3000:]}"
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def _client_only(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == name or m.startswith(name + ".") for name in CLIENT_ONLY)]


@pytest.mark.parametrize("name", HANDLERS)
def test_handler_loads_no_client_module(name: str, tmp_path: Path) -> None:
    # cwd outside the repository: buildlogs comes from the installed package, nothing else
    modules = _loaded_modules(str(FUNCTIONS_DIR / name / "handler.py"), tmp_path)
    assert "handler" in modules
    assert "buildlogs.settings" in modules
    assert _client_only(modules) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    """Positive control: the embedded Redis of the local run does load fakeredis."""
    modules = _loaded_modules("buildlogs.client.embedded", tmp_path)
    assert "fakeredis" in _client_only(modules)
    assert "buildlogs.client" in _client_only(modules)
    assert "buildlogs.clients" not in _client_only(modules)  # a name that only starts alike


def test_layer_bundle_has_no_client(tmp_path: Path) -> None:
    assert (LAYER_PACKAGE_DIR / "client" / "__init__.py").is_file()  # in the package, not in the layer
    bundle = layer.build_layer("skip", cache_dir=tmp_path) / "python" / "buildlogs"
    assert (bundle / "clients.py").is_file()
    assert (bundle / "stream" / "streamer.py").is_file()
    assert not (bundle / "client").exists()
    assert not list(bundle.rglob("fakeredis*"))

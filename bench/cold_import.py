"""Cold import time of each Lambda handler next to the bare imports of the third-party packages it loads.

For every handler: a fresh interpreter imports it (median of 5), and records the third-party
modules it loaded; another fresh interpreter imports just those modules, in the same order
(median of 5). The ratio handler/packages shows what our own code adds on a cold start
(target <= 1.2x); the API and archiver handlers must load no e2b. A handler that does not exist
yet is reported, not measured.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = ("functions/stage/handler.py", "functions/archiver/handler.py", "functions/api/handler.py")
NO_E2B = ("functions/archiver/handler.py", "functions/api/handler.py")
RUNS = 5
TARGET = 1.2
FIRST_PARTY = ("buildlogs", "functions", "infra", "tests", "bench")

_PROBE = """
import json, sys, time
before = set(sys.modules)
started = time.perf_counter()
import importlib
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - started
loaded = [name for name in sys.modules if name not in before]
print(json.dumps({"seconds": elapsed, "loaded": loaded}))
"""

_BASELINE = """
import importlib, json, sys, time
names = json.loads(sys.stdin.read())
started = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers" / "buildlogs" / "python"), str(ROOT)])
    env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "buildlogs-bench")
    env.setdefault("POWERTOOLS_SERVICE_NAME", "buildlogs-bench")
    env.setdefault("SANDBOX_RUNTIME", "local")
    env.setdefault("STAGE", "install")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(code: str, *args: str, stdin: str = "") -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def _third_party(names: list[str]) -> list[str]:
    stdlib = sys.stdlib_module_names
    keep = []
    for name in names:
        top = name.split(".", 1)[0]
        if top in stdlib or top in FIRST_PARTY or top.startswith("_") or top == "__main__":
            continue
        keep.append(name)
    return keep


def measure(handler: str) -> dict[str, object]:
    module = handler.removesuffix(".py").replace("/", ".")
    _run(_PROBE, module)  # warm the bytecode cache: we measure imports, not compilation
    probes = [_run(_PROBE, module) for _ in range(RUNS)]
    loaded = list(probes[0]["loaded"])  # type: ignore[call-overload]
    packages = _third_party(loaded)
    baseline = [float(_run(_BASELINE, stdin=json.dumps(packages))["seconds"]) for _ in range(RUNS)]  # type: ignore[arg-type]
    handler_s = statistics.median(float(p["seconds"]) for p in probes)  # type: ignore[arg-type]
    baseline_s = statistics.median(baseline)
    tops = sorted({name.split(".", 1)[0] for name in packages})
    return {
        "handler_ms": handler_s * 1000,
        "packages_ms": baseline_s * 1000,
        "ratio": handler_s / baseline_s if baseline_s else float("inf"),
        "packages": tops,
        "e2b": any(name == "e2b" or name.startswith("e2b.") for name in loaded),
    }


def main() -> int:
    print(f"cold import, fresh interpreter, median of {RUNS} (target: handler <= {TARGET}x its packages)")
    failures = 0
    for handler in HANDLERS:
        if not (ROOT / handler).exists():
            print(f"  {handler:32} not present yet: skipped (re-run when it exists)")
            continue
        try:
            result = measure(handler)
        except RuntimeError as exc:
            print(f"  {handler:32} import failed: {exc}")
            failures += 1
            continue
        ratio = float(result["ratio"])  # type: ignore[arg-type]
        verdict = "ok" if ratio <= TARGET else "ABOVE TARGET"
        e2b_note = "loads e2b" if result["e2b"] else "no e2b"
        if result["e2b"] and handler in NO_E2B:
            e2b_note += " (MUST NOT)"
            failures += 1
        print(
            f"  {handler:32} handler {float(result['handler_ms']):7.1f} ms | packages "  # type: ignore[arg-type]
            f"{float(result['packages_ms']):7.1f} ms | {ratio:4.2f}x {verdict} | {e2b_note}"  # type: ignore[arg-type]
        )
        print(f"  {'':32} packages: {', '.join(result['packages'])}")  # type: ignore[arg-type]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

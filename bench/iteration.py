"""Iteration builds (issue 12) on the default example: first build vs an iteration in its sandbox.

Three builds through ``buildlogs run``'s local stack (the deployed definition in moto, every stage
handler, Redis, the archiver), each timed from submit to archived: a first build of the example,
an iteration that changes one source file (``public/index.html``: Scaffold writes one file, Install
is skipped, the dev server restarts), and an iteration that changes the dependency manifest
(``requirements.txt`` added: Install runs again). Printed: medians of RUNS and the iterations'
ratios to the first build (target for the one-file iteration: at most 0.3x).

The example's own install is a no-op (``python3 --version``), so there the pipeline's fixed cost per
stage dominates and skipping Install saves little; the same example with an install that does work
offline (``python3 -m venv .venv``: a real environment with pip, ~2 s, as a project's dependency
install would take) shows what an iteration saves. Both are printed.
"""

import json
import tempfile
import time
from pathlib import Path

from bench.common import REDIS_URL, median
from bench.pipeline import EXAMPLE, free_port
from buildlogs.client.local_run import LocalRunConfig, LocalStack
from buildlogs.client.project import load_spec
from buildlogs.pipeline.models import BuildSpec
from buildlogs.settings import apply_environment

RUNS = 3
TARGET = 0.3
WORKING_INSTALL = "python3 -m venv --clear .venv && .venv/bin/python -m pip --version"


def timed(stack: LocalStack, spec: BuildSpec) -> tuple[str, float]:
    started = time.perf_counter()
    build_id = stack.submit(spec)
    status = stack.wait(build_id)
    elapsed = time.perf_counter() - started
    if status != "SUCCEEDED":
        lines = stack.archive_path(build_id).read_text().splitlines()[-12:]
        tail = "\n".join(str(json.loads(line).get("text")) for line in lines)
        raise SystemExit(f"the benchmark build {build_id} ended {status}:\n{tail}")
    return build_id, elapsed


def measure(stack: LocalStack, spec: BuildSpec, title: str) -> None:
    page = spec.files["public/index.html"]
    firsts, sources, manifests = [], [], []
    for run in range(RUNS):
        first, elapsed = timed(stack, spec.model_copy(update={"port": free_port()}))
        firsts.append(elapsed)
        change = {"public/index.html": page.replace("</h1>", f" (edit {run})</h1>")}
        source, elapsed = timed(stack, BuildSpec(iterate_from=first, files=change))
        sources.append(elapsed)
        manifest = {"requirements.txt": f"# no dependencies (edit {run})\n"}
        _manifest_build, elapsed = timed(stack, BuildSpec(iterate_from=source, files=manifest))
        manifests.append(elapsed)
    first_s, source_s, manifest_s = median(firsts), median(sources), median(manifests)
    print(f"iteration builds, examples/{EXAMPLE.name}, {title}; local stack, medians of {RUNS} (submit to archived)")
    print(f"  first build:                      {first_s * 1000:8.0f} ms")
    ok = "ok" if source_s / first_s <= TARGET else f"above the {TARGET}x target"
    print(f"  iteration, one source file:       {source_s * 1000:8.0f} ms  = {source_s / first_s:.2f}x first ({ok})")
    print(f"  iteration, manifest changed:      {manifest_s * 1000:8.0f} ms  = {manifest_s / first_s:.2f}x first")


def main() -> None:
    apply_environment({"REDIS_URL": REDIS_URL})
    spec = load_spec(EXAMPLE)
    workdir = Path(tempfile.mkdtemp(prefix="buildlogs-bench-"))
    with LocalStack(LocalRunConfig(workdir=workdir, cache_dir=workdir / "cache")) as stack:
        measure(stack, spec, f"as it is (install: {spec.install})")
        measure(stack, spec.model_copy(update={"install": WORKING_INSTALL}), f"install: {WORKING_INSTALL}")


if __name__ == "__main__":
    main()

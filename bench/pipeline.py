"""The local pipeline's overhead on the default example, against the example's own commands.

Baseline (same run): the example's commands run directly in a fresh copy of its files — install,
build, start until the port answers, one health check request. Pipeline: the same build through
``buildlogs run``'s local stack (the deployed definition in moto, every stage handler, Redis
streaming, the archiver), from submit to archived. Printed: wall times, the ratio, the overhead
in ms per stage, and the delay from submit to the first log entry reaching an API follower
(a long-poll ``GET /builds/{id}/logs?wait=20`` started before the submit). Medians of RUNS.
The local stack's own start (imports, moto, the cached definition) is reported apart.
"""

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench.common import REDIS_URL, median
from buildlogs.client.local_run import LocalRunConfig, LocalStack
from buildlogs.client.project import load_spec
from buildlogs.pipeline.models import BuildSpec
from buildlogs.pipeline.stages import PIPELINE
from buildlogs.settings import apply_environment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello-web"
RUNS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_commands_directly(spec: BuildSpec) -> float:
    """Seconds for the example's own commands, in a fresh directory (the baseline)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in spec.files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PORT": str(spec.port)}
        started = time.perf_counter()
        for command in (spec.install, spec.build):
            if command:
                subprocess.run(["/bin/bash", "-c", command], cwd=tmp, env=env, check=True, capture_output=True)
        quiet = subprocess.DEVNULL
        server = subprocess.Popen(
            ["/bin/bash", "-c", spec.start], cwd=tmp, env=env, stdout=quiet, stderr=quiet, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{spec.port}{spec.healthcheck_path}"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        response.read()
                    break
                except OSError:
                    time.sleep(0.01)
            return time.perf_counter() - started
        finally:
            server.kill()
            server.wait()


def first_entry_delay(api_url: str, build_id: str, submitted: list[float], out: list[float]) -> None:
    """Long-poll from before the submit; record when the first entry arrives."""
    url = f"{api_url}builds/{build_id}/logs?after=0-0&wait=20&limit=1"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                page = json.loads(response.read())
        except OSError:  # 404 until the build exists
            time.sleep(0.005)
            continue
        if page["entries"]:
            out.append(time.perf_counter() - submitted[0])
            return


def run_pipeline(stack: LocalStack, spec: BuildSpec) -> tuple[float, float]:
    build_id = f"bench-{uuid.uuid4().hex[:12]}"
    spec = spec.model_copy(update={"build_id": build_id, "port": free_port()})
    submitted: list[float] = [0.0]
    first: list[float] = []
    follower = threading.Thread(target=first_entry_delay, args=(stack.api_url, build_id, submitted, first))
    submitted[0] = time.perf_counter()
    follower.start()
    stack.submit(spec)
    status = stack.wait(build_id)
    wall = time.perf_counter() - submitted[0]
    follower.join(30)
    if status != "SUCCEEDED" or not first:
        raise SystemExit(f"the benchmark build ended {status}")
    return wall, first[0]


def main() -> None:
    apply_environment({"REDIS_URL": REDIS_URL})
    spec = load_spec(EXAMPLE)
    workdir = Path(tempfile.mkdtemp(prefix="buildlogs-bench-"))
    try:
        started = time.perf_counter()
        with LocalStack(LocalRunConfig(workdir=workdir, cache_dir=workdir / "cache")) as stack:
            cold_start = time.perf_counter() - started
        started = time.perf_counter()
        with LocalStack(LocalRunConfig(workdir=workdir, cache_dir=workdir / "cache")) as stack:
            warm_start = time.perf_counter() - started
            baseline, walls, firsts = [], [], []
            for _ in range(RUNS):  # interleaved, so both see the same machine
                baseline.append(run_commands_directly(spec.model_copy(update={"port": free_port()})))
                wall, first = run_pipeline(stack, spec)
                walls.append(wall)
                firsts.append(first)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base, wall = median(baseline), median(walls)
    print(
        f"pipeline: default example ({EXAMPLE.name}), {len(PIPELINE)} stages, medians of {RUNS} runs, Redis {REDIS_URL}"
    )
    print(f"  commands run directly (baseline)   {base * 1000:8.0f} ms")
    print(f"  whole build through the pipeline   {wall * 1000:8.0f} ms   ratio {wall / base:.2f}x")
    print(f"  pipeline overhead                  {(wall - base) * 1000 / len(PIPELINE):8.0f} ms per stage")
    print(f"  submit -> first entry at follower  {median(firsts) * 1000:8.0f} ms")
    print(f"  local stack start: {cold_start:.1f} s with synth, {warm_start:.1f} s with the cached definition")


if __name__ == "__main__":
    main()

"""Shared bits of the benchmarks: the Redis they run against, medians, moto S3 in a manager
process and measurements in fresh child processes (peak RSS is per process)."""

import json
import os
import statistics
import subprocess
import sys
from typing import Any

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_moto_s3(region: str) -> Any:
    """In a manager process (its initializer): start moto's S3 mock, return a boto3 client of it."""
    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    mock_aws().start()
    return boto3.client("s3", region_name=region)


def run_child(module: str, args: list[str], authkey_env: str, authkey: bytes) -> dict[str, Any]:
    """Run ``python -m module --child *args`` (the manager's authkey in ``authkey_env``); its last
    stdout line is the JSON result."""
    env = dict(os.environ, **{authkey_env: authkey.hex()})
    command = [sys.executable, "-m", module, "--child", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)!r} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result

"""Shared bits of the benchmarks: the Redis they run against and a median helper."""

import os
import statistics

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]

"""Typed configuration, parsed once from the environment (the only place that reads os.environ)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of DESIGN.md's "Settings"; defaults are the embedded local ones."""

    redis_url: str = ""  # empty: the embedded fakeredis (local runs only)
    redis_cluster: bool = False  # true for ElastiCache Serverless (cluster mode only)
    log_archive_bucket: str = ""  # empty: skip archival
    log_stream_ttl_seconds: int = 3600
    log_stream_maxlen: int = 100_000
    log_max_line_bytes: int = 16_384
    log_flush_lines: int = 500
    log_flush_interval_ms: int = 5
    state_machine_arn: str = ""
    sources_bucket: str = ""
    archive_sweep_lookback_minutes: int = 120
    e2b_api_key_secret_arn: str = ""
    e2b_api_key: str = ""
    sandbox_runtime: Literal["e2b", "local"] = "local"
    stage: str = ""  # the stage a stage Lambda runs (its function's STAGE)
    api_url: str = ""  # the CLI's API root (BUILDLOGS_API_URL; --api overrides it)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        runtime = env.get("SANDBOX_RUNTIME", "local").strip().lower() or "local"
        if runtime not in ("e2b", "local"):
            raise ValueError(f"SANDBOX_RUNTIME must be 'e2b' or 'local', got {runtime!r}")
        return cls(
            redis_url=env.get("REDIS_URL", "").strip(),
            redis_cluster=_bool(env.get("REDIS_CLUSTER", "")),
            log_archive_bucket=env.get("LOG_ARCHIVE_BUCKET", "").strip(),
            log_stream_ttl_seconds=_int(env, "LOG_STREAM_TTL_SECONDS", 3600, 1),
            log_stream_maxlen=_int(env, "LOG_STREAM_MAXLEN", 100_000, 10),
            log_max_line_bytes=_int(env, "LOG_MAX_LINE_BYTES", 16_384, 64),
            log_flush_lines=_int(env, "LOG_FLUSH_LINES", 500, 1),
            log_flush_interval_ms=_int(env, "LOG_FLUSH_INTERVAL_MS", 5, 0),
            state_machine_arn=env.get("STATE_MACHINE_ARN", "").strip(),
            sources_bucket=env.get("SOURCES_BUCKET", "").strip(),
            archive_sweep_lookback_minutes=_int(env, "ARCHIVE_SWEEP_LOOKBACK_MINUTES", 120, 1),
            e2b_api_key_secret_arn=env.get("E2B_API_KEY_SECRET_ARN", "").strip(),
            e2b_api_key=env.get("E2B_API_KEY", "").strip(),
            sandbox_runtime="e2b" if runtime == "e2b" else "local",
            stage=env.get("STAGE", "").strip(),
            api_url=env.get("BUILDLOGS_API_URL", "").strip(),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, parsed on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env(os.environ)

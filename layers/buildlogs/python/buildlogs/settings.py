"""Typed configuration, parsed once from the environment (the only place that reads os.environ).

``Settings(...)`` takes explicit values by field name (the rest keep their defaults; the
environment is not consulted). ``Settings.from_env(mapping)`` reads one mapping of environment
variables through pydantic-settings' environment source, and ``get_settings()`` is that over
``os.environ``, cached (tests call ``get_settings.cache_clear()``).

Each field's environment variable is its ``validation_alias``. Values are stripped; an empty
value means the default; a bad value is a ``ValueError`` naming the variable.
"""

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of DESIGN.md's "Settings"; defaults are the embedded local ones."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,  # REDIS_URL, not redis_url
        env_ignore_empty=True,  # empty: the default
        str_strip_whitespace=True,
        validate_by_name=True,  # Settings(redis_url=...)
        validate_by_alias=True,  # from_env: by variable name
        extra="forbid",
    )

    redis_url: str = Field("", validation_alias="REDIS_URL")  # empty: the embedded fakeredis (local runs only)
    redis_cluster: bool = Field(False, validation_alias="REDIS_CLUSTER")  # true for ElastiCache Serverless
    log_archive_bucket: str = Field("", validation_alias="LOG_ARCHIVE_BUCKET")  # empty: skip archival
    log_stream_ttl_seconds: int = Field(3600, ge=1, validation_alias="LOG_STREAM_TTL_SECONDS")
    log_stream_maxlen: int = Field(100_000, ge=10, validation_alias="LOG_STREAM_MAXLEN")
    log_max_line_bytes: int = Field(16_384, ge=64, validation_alias="LOG_MAX_LINE_BYTES")
    log_flush_lines: int = Field(500, ge=1, validation_alias="LOG_FLUSH_LINES")
    log_flush_interval_ms: int = Field(5, ge=0, validation_alias="LOG_FLUSH_INTERVAL_MS")
    state_machine_arn: str = Field("", validation_alias="STATE_MACHINE_ARN")
    sources_bucket: str = Field("", validation_alias="SOURCES_BUCKET")
    # The state machine's execution timeout (infra's execution_timeout_minutes): an iteration's lease lasts as long.
    execution_timeout_seconds: int = Field(10_800, ge=60, validation_alias="EXECUTION_TIMEOUT_SECONDS")
    archive_sweep_lookback_minutes: int = Field(120, ge=1, validation_alias="ARCHIVE_SWEEP_LOOKBACK_MINUTES")
    e2b_api_key_secret_arn: str = Field("", validation_alias="E2B_API_KEY_SECRET_ARN")
    e2b_api_key: str = Field("", validation_alias="E2B_API_KEY")
    sandbox_runtime: Literal["e2b", "local"] = Field("local", validation_alias="SANDBOX_RUNTIME")
    # How long a sandbox is kept after its last build started (E2B's timeout, extended by each iteration).
    sandbox_keep_alive_seconds: int = Field(3600, ge=60, validation_alias="SANDBOX_KEEP_ALIVE_SECONDS")
    stage: str = Field("", validation_alias="STAGE")  # the stage a stage Lambda runs (its function's STAGE)
    api_url: str = Field("", validation_alias="BUILDLOGS_API_URL")  # the CLI's API root (--api overrides it)

    @field_validator("sandbox_runtime", mode="before")
    @classmethod
    def _lower_case_runtime(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(...)``: its arguments only (the environment is read by ``from_env``)."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """The settings in ``env`` (a mapping of environment variables), and nothing else."""
        values = _MappingEnvSource(cls, env)()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError("; ".join(_explain(error) for error in exc.errors())) from None


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)  # calls _load_env_vars

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # stripped; whitespace-only is empty, and empty is the default (env_ignore_empty)
        # Only the variables' own names (REDIS_URL): a field name (redis_url) in the environment is
        # some other program's variable, never ours.
        names = {field.validation_alias for field in Settings.model_fields.values()}
        stripped = {
            name: value.strip() for name, value in self._env.items() if isinstance(value, str) and name in names
        }
        return {
            name if self.case_sensitive else name.lower(): value
            for name, value in stripped.items()
            if value or not self.env_ignore_empty
        }


def _explain(error: ErrorDetails) -> str:
    """One validation error as ``NAME must ...``, naming the environment variable."""
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    value, context = error.get("input"), error.get("ctx") or {}
    kind = error["type"]
    if kind == "greater_than_equal":
        return f"{name} must be >= {context['ge']}, got {value}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{name} must be an integer, got {value!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{name} must be true or false, got {value!r}"
    if kind == "literal_error":
        return f"{name} must be {context['expected']}, got {value!r}"
    return f"{name}: {error['msg']}, got {value!r}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, parsed on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env(os.environ)


def apply_environment(variables: Mapping[str, str | None]) -> dict[str, str | None]:
    """Set (``None``: unset) environment variables of this process and drop the cached settings.

    The local run hosts every Lambda function in one process: this is how it gives them the
    environment the stack gives them in AWS (and each stage invocation its ``STAGE``). Returns
    the previous values, so ``apply_environment(previous)`` restores them.
    """
    previous = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()
    return previous

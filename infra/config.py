"""Typed stack settings, read from CDK context (cdk.json, or ``cdk synth -c buildlogs:<key>=<value>``)."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from constructs import Node

from infra.constants import CDK_JSON

CONTEXT_PREFIX = "buildlogs:"

CacheEngine = Literal["serverless-valkey", "valkey", "redis"]
LayerBundling = Literal["pip", "skip"]

CACHE_ENGINES: tuple[CacheEngine, ...] = ("serverless-valkey", "valkey", "redis")
LAYER_BUNDLINGS: tuple[LayerBundling, ...] = ("pip", "skip")

# CloudWatch Logs accepts only these retention periods.
RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


@dataclass(frozen=True, slots=True)
class StackSettings:
    """Every knob of the stack; the context key is ``buildlogs:<camelCase of the field>``."""

    env_name: str = "dev"
    nat_gateways: int = 1  # E2B egress from the private subnets; 2 for an AZ-resilient egress
    # serverless-valkey: ElastiCache Serverless (cluster mode only, REDIS_CLUSTER=true), no node to size;
    # valkey / redis: one primary + one replica (cache.t4g.small), plain client (REDIS_CLUSTER=false).
    cache_engine: CacheEngine = "serverless-valkey"
    cache_node_type: str = "cache.t4g.small"
    log_retention_days: int = 30
    archive_enabled: bool = True
    archive_transition_days: int = 30  # build-logs/ to STANDARD_IA
    archive_expiration_days: int = 365  # build-logs/ deleted
    sources_expiration_days: int = 30  # sources/ (BuildSpecs: their env values are secrets)
    retry_interval_seconds: int = 2  # first retry of a stage task; small in tests of the ASL
    retry_max_attempts: int = 3
    retry_backoff_rate: float = 2.0
    execution_timeout_minutes: int = 180
    log_level: str = "INFO"
    api_throttle_rate: int = 50  # requests per second, steady
    api_throttle_burst: int = 100
    layer_bundling: LayerBundling = "pip"  # "skip": the layer ships the package only (tests; no pip)

    def __post_init__(self) -> None:
        if self.cache_engine not in CACHE_ENGINES:
            raise ValueError(f"cacheEngine must be one of {CACHE_ENGINES}, got {self.cache_engine!r}")
        if self.layer_bundling not in LAYER_BUNDLINGS:
            raise ValueError(f"layerBundling must be one of {LAYER_BUNDLINGS}, got {self.layer_bundling!r}")
        if self.log_retention_days not in RETENTION_DAYS:
            raise ValueError(f"logRetentionDays must be one of {RETENTION_DAYS}, got {self.log_retention_days}")
        if self.nat_gateways < 1:
            raise ValueError("natGateways must be >= 1: the stage functions reach E2B through NAT")
        if not 1 <= self.archive_transition_days < self.archive_expiration_days:
            raise ValueError("archiveTransitionDays must be >= 1 and below archiveExpirationDays")
        if self.archive_transition_days < 30:
            raise ValueError("archiveTransitionDays must be >= 30 (S3's minimum for STANDARD_IA)")
        if self.retry_interval_seconds < 1 or self.retry_max_attempts < 0 or self.retry_backoff_rate < 1:
            raise ValueError("retry settings: intervalSeconds >= 1, maxAttempts >= 0, backoffRate >= 1")
        if not self.env_name.replace("-", "").isalnum():
            raise ValueError(f"envName must be alphanumeric (dashes allowed), got {self.env_name!r}")

    @property
    def redis_cluster(self) -> bool:
        """ElastiCache Serverless speaks cluster mode only."""
        return self.cache_engine == "serverless-valkey"

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "StackSettings":
        """Settings from a context mapping; CLI ``-c`` values arrive as strings and are converted."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = CONTEXT_PREFIX + _camel(field.name)
            if key in context and context[key] is not None:
                values[field.name] = _convert(key, context[key], field.default)
        return cls(**values)

    @classmethod
    def from_node(cls, node: Node) -> "StackSettings":
        keys = [CONTEXT_PREFIX + _camel(field.name) for field in fields(cls)]
        return cls.from_context({key: node.try_get_context(key) for key in keys})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _convert(key: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(text)
            return text in {"true", "1", "yes"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except ValueError:
        raise ValueError(f"context {key}: cannot read {raw!r} as {type(default).__name__}") from None


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` of cdk.json, as the CDK CLI passes it to ``python3 app.py``."""
    data = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    return cast(dict[str, Any], data.get("context", {}))

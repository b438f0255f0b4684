"""Typed stack settings, read from CDK context (cdk.json, or ``cdk synth -c buildlogs:<key>=<value>``)."""

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from aws_cdk import aws_logs as logs
from constructs import Node
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from infra.constants import CDK_JSON

CONTEXT_PREFIX = "buildlogs:"

CacheEngine = Literal["serverless-valkey", "valkey", "redis"]
LayerBundling = Literal["pip", "skip"]

# The retention periods CloudWatch Logs accepts, in days: the one list (infra.common reads it).
LOG_RETENTION: Final[Mapping[int, logs.RetentionDays]] = MappingProxyType(
    {
        1: logs.RetentionDays.ONE_DAY,
        3: logs.RetentionDays.THREE_DAYS,
        5: logs.RetentionDays.FIVE_DAYS,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        60: logs.RetentionDays.TWO_MONTHS,
        90: logs.RetentionDays.THREE_MONTHS,
        120: logs.RetentionDays.FOUR_MONTHS,
        150: logs.RetentionDays.FIVE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
        400: logs.RetentionDays.THIRTEEN_MONTHS,
        545: logs.RetentionDays.EIGHTEEN_MONTHS,
        731: logs.RetentionDays.TWO_YEARS,
        1096: logs.RetentionDays.THREE_YEARS,
        1827: logs.RetentionDays.FIVE_YEARS,
        2192: logs.RetentionDays.SIX_YEARS,
        2557: logs.RetentionDays.SEVEN_YEARS,
        2922: logs.RetentionDays.EIGHT_YEARS,
        3288: logs.RetentionDays.NINE_YEARS,
        3653: logs.RetentionDays.TEN_YEARS,
    }
)
RETENTION_DAYS: Final[tuple[int, ...]] = tuple(LOG_RETENTION)


class StackSettings(BaseModel):
    """Every knob of the stack; the context key is ``buildlogs:<camelCase of the field>``.

    Built by field name (``StackSettings(nat_gateways=2)``) or from context (``from_context``,
    ``from_node``: camelCase keys; CLI ``-c`` values arrive as strings and are converted).
    """

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",  # a typo'd key is an error, not a silently ignored setting
        str_strip_whitespace=True,
        coerce_numbers_to_str=True,  # -c buildlogs:envName=123
    )

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

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION:
            raise ValueError(f"must be one of {RETENTION_DAYS}")
        return days

    @field_validator("nat_gateways")
    @classmethod
    def _some_nat(cls, count: int) -> int:
        if count < 1:
            raise ValueError("must be >= 1: the stage functions reach E2B through NAT")
        return count

    @field_validator("env_name")
    @classmethod
    def _simple_name(cls, name: str) -> str:
        if not name.replace("-", "").isalnum():
            raise ValueError("must be alphanumeric (dashes allowed)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> "StackSettings":
        if not 1 <= self.archive_transition_days < self.archive_expiration_days:
            raise ValueError("archiveTransitionDays must be >= 1 and below archiveExpirationDays")
        if self.archive_transition_days < 30:
            raise ValueError("archiveTransitionDays must be >= 30 (S3's minimum for STANDARD_IA)")
        if self.retry_interval_seconds < 1 or self.retry_max_attempts < 0 or self.retry_backoff_rate < 1:
            raise ValueError("retry settings: intervalSeconds >= 1, maxAttempts >= 0, backoffRate >= 1")
        return self

    @property
    def redis_cluster(self) -> bool:
        """ElastiCache Serverless speaks cluster mode only."""
        return self.cache_engine == "serverless-valkey"

    @classmethod
    def context_keys(cls) -> tuple[str, ...]:
        """Every context key a setting is read from (``buildlogs:envName``, ...)."""
        return tuple(CONTEXT_PREFIX + (field.alias or name) for name, field in cls.model_fields.items())

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "StackSettings":
        """Settings from a context mapping: its ``buildlogs:`` keys (None: the default); others are ignored."""
        values = {
            key[len(CONTEXT_PREFIX) :]: value
            for key, value in context.items()
            if key.startswith(CONTEXT_PREFIX) and value is not None
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError("; ".join(_explain(error) for error in exc.errors())) from None

    @classmethod
    def from_node(cls, node: Node) -> "StackSettings":
        return cls.from_context({key: node.try_get_context(key) for key in cls.context_keys()})


def _explain(error: ErrorDetails) -> str:
    """One validation error, naming its context key (cross-field errors name theirs in the message)."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message
    key = CONTEXT_PREFIX + ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"context {key}: not a setting (known: {', '.join(StackSettings.context_keys())})"
    return f"context {key}: {message}, got {error.get('input')!r}"


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` of cdk.json, as the CDK CLI passes it to ``python3 app.py``."""
    data = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    return cast(dict[str, Any], data.get("context", {}))

"""Names the infrastructure and its tests share: environment variables, ids, asset paths.

The environment variable names are the ones ``buildlogs.settings`` reads (DESIGN.md "Settings").
"""

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
LAYER_DIR: Final = ROOT / "layers" / "buildlogs"
LAYER_PACKAGE_ROOT: Final = LAYER_DIR / "python"  # the layer's root (Lambda puts /opt/python on sys.path)
LAYER_PACKAGE_DIR: Final = LAYER_PACKAGE_ROOT / "buildlogs"
LAYER_REQUIREMENTS: Final = LAYER_DIR / "requirements.txt"
BUILD_CACHE_DIR: Final = ROOT / ".build"  # git-ignored: the bundled layer, keyed by its inputs
FUNCTIONS_DIR: Final = ROOT / "functions"
CDK_JSON: Final = ROOT / "cdk.json"

STACK_ID: Final = "Buildlogs"
SERVICE_NAME: Final = "buildlogs"
METRICS_NAMESPACE: Final = "buildlogs"
HANDLER: Final = "handler.lambda_handler"

# Function code assets: each function's own directory.
STAGE_FUNCTION: Final = "stage"
ARCHIVER_FUNCTION: Final = "archiver"
API_FUNCTION: Final = "api"

# Environment variables (buildlogs.settings and Powertools).
ENV_REDIS_URL: Final = "REDIS_URL"
ENV_REDIS_CLUSTER: Final = "REDIS_CLUSTER"
ENV_LOG_ARCHIVE_BUCKET: Final = "LOG_ARCHIVE_BUCKET"
ENV_LOG_STREAM_TTL_SECONDS: Final = "LOG_STREAM_TTL_SECONDS"
ENV_LOG_STREAM_MAXLEN: Final = "LOG_STREAM_MAXLEN"
ENV_LOG_MAX_LINE_BYTES: Final = "LOG_MAX_LINE_BYTES"
ENV_LOG_FLUSH_LINES: Final = "LOG_FLUSH_LINES"
ENV_LOG_FLUSH_INTERVAL_MS: Final = "LOG_FLUSH_INTERVAL_MS"
ENV_STATE_MACHINE_ARN: Final = "STATE_MACHINE_ARN"
ENV_SOURCES_BUCKET: Final = "SOURCES_BUCKET"
ENV_EXECUTION_TIMEOUT_SECONDS: Final = "EXECUTION_TIMEOUT_SECONDS"
ENV_ARCHIVE_SWEEP_LOOKBACK_MINUTES: Final = "ARCHIVE_SWEEP_LOOKBACK_MINUTES"
ENV_E2B_API_KEY_SECRET_ARN: Final = "E2B_API_KEY_SECRET_ARN"  # noqa: S105 (a variable name)
ENV_SANDBOX_RUNTIME: Final = "SANDBOX_RUNTIME"
ENV_STAGE: Final = "STAGE"
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"

SANDBOX_RUNTIME_E2B: Final = "e2b"

# S3 key prefixes (DESIGN.md: sources/{build_id}/spec.json, build-logs/{build_id}/build.jsonl).
SOURCES_PREFIX: Final = "sources/"
ARCHIVE_PREFIX: Final = "build-logs/"

REDIS_PORT: Final = 6379

# The archiver's scheduled sweep: the input the EventBridge Scheduler schedule sends.
SWEEP_SOURCE: Final = "buildlogs.sweep"
SWEEP_DETAIL_TYPE: Final = "Scheduled Archive Sweep"
SWEEP_EVENT: Final = {"source": SWEEP_SOURCE, "detail-type": SWEEP_DETAIL_TYPE}
SWEEP_RATE_MINUTES: Final = 15

# The EventBridge event Step Functions emits when an execution ends.
SFN_EVENT_SOURCE: Final = "aws.states"
SFN_EVENT_DETAIL_TYPE: Final = "Step Functions Execution Status Change"

# Lambda service errors a LambdaInvoke task retries (besides the stage's own retryable errors).
LAMBDA_SERVICE_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)

# What the state machine keeps between states (DESIGN.md "Execution state").
EXECUTION_STATE_KEYS: Final = ("build_id", "spec_ref", "sandbox_id", "preview_url")
FAILURE_RESULT_PATH: Final = "$.error"  # a caught error lands here, next to the execution state

# Local execution of the synthesized definition (infra/definition.py).
FAKE_PARTITION: Final = "aws"
FAKE_REGION: Final = "us-east-1"
FAKE_ACCOUNT: Final = "123456789012"


def fake_function_arn(stage_name: str) -> str:
    """The ARN a stage task invokes in the locally resolved state machine definition."""
    return f"arn:{FAKE_PARTITION}:lambda:{FAKE_REGION}:{FAKE_ACCOUNT}:function:{SERVICE_NAME}-{stage_name}"

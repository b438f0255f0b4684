"""Every function: runtime, architecture, layer, tracing, Powertools env, VPC, log retention; stage specifics."""

from typing import Any

from buildlogs.pipeline.stages import STAGES
from infra import constants as c
from infra.api import API_TIMEOUT_SECONDS
from infra.layer import ARCHITECTURE, RUNTIME
from tests.support.synth import Synth

COMMON_ENV = {
    c.ENV_POWERTOOLS_SERVICE_NAME,
    c.ENV_POWERTOOLS_METRICS_NAMESPACE,
    c.ENV_LOG_LEVEL,
    c.ENV_REDIS_URL,
    c.ENV_REDIS_CLUSTER,
}


def _props(synth: Synth, function: Any) -> dict[str, Any]:
    return synth.json["Resources"][synth.logical_id(function)]["Properties"]


def _all_functions(synth: Synth) -> list[Any]:
    stack = synth.stack
    return [*stack.stages.functions.values(), stack.archive.function, stack.api.function]


def test_only_our_functions_exist(synth: Synth) -> None:
    # no custom-resource or log-retention helper functions sneak in
    assert len(synth.resources("AWS::Lambda::Function")) == len(STAGES) + 2


def test_every_function_has_runtime_layer_tracing_env_vpc_and_logs(synth: Synth) -> None:
    layer_id = synth.logical_id(synth.stack.layer)
    log_groups = synth.resources("AWS::Logs::LogGroup")
    for function in _all_functions(synth):
        props = _props(synth, function)
        assert props["Runtime"] == RUNTIME.name == "python3.14"
        assert props["Architectures"] == [ARCHITECTURE.name] == ["arm64"]
        assert props["Handler"] == c.HANDLER
        assert props["Layers"] == [{"Ref": layer_id}]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env.keys() >= COMMON_ENV
        assert env[c.ENV_POWERTOOLS_SERVICE_NAME] == c.SERVICE_NAME
        assert env[c.ENV_POWERTOOLS_METRICS_NAMESPACE] == c.METRICS_NAMESPACE
        assert env[c.ENV_REDIS_CLUSTER] == "true"  # serverless cache (cdk.json default)
        assert props["VpcConfig"]["SecurityGroupIds"] == [
            {"Fn::GetAtt": [synth.logical_id(synth.stack.network.lambda_security_group), "GroupId"]}
        ]
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_groups[log_group]["Properties"]["RetentionInDays"] == 30


def test_stage_functions_from_the_registry(synth: Synth) -> None:
    secret_id = synth.logical_id(synth.stack.e2b_secret)
    bucket_id = synth.logical_id(synth.stack.storage.bucket)
    for stage in STAGES:
        props = _props(synth, synth.stack.stages.functions[stage.name])
        assert props["Timeout"] == stage.timeout_seconds
        env = props["Environment"]["Variables"]
        assert env[c.ENV_STAGE] == stage.name
        assert env[c.ENV_SANDBOX_RUNTIME] == "e2b"
        assert env[c.ENV_E2B_API_KEY_SECRET_ARN] == {"Ref": secret_id}
        assert env[c.ENV_SOURCES_BUCKET] == {"Ref": bucket_id}


def test_redis_url_is_tls_to_the_cache_endpoint(synth: Synth) -> None:
    env = _props(synth, synth.stack.api.function)["Environment"]["Variables"]
    parts = env[c.ENV_REDIS_URL]["Fn::Join"][1]
    assert parts[0] == "rediss://"
    assert parts[1]["Fn::GetAtt"][1] == "Endpoint.Address"
    assert parts[3]["Fn::GetAtt"][1] == "Endpoint.Port"


def test_api_function(synth: Synth) -> None:
    props = _props(synth, synth.stack.api.function)
    assert props["Timeout"] == API_TIMEOUT_SECONDS == 30
    env = props["Environment"]["Variables"]
    machine = synth.logical_id(synth.stack.pipeline.state_machine)
    bucket = synth.logical_id(synth.stack.storage.bucket)
    assert env[c.ENV_STATE_MACHINE_ARN] == {"Ref": machine}
    assert env[c.ENV_SOURCES_BUCKET] == {"Ref": bucket}
    assert env[c.ENV_LOG_ARCHIVE_BUCKET] == {"Ref": bucket}
    assert c.ENV_E2B_API_KEY_SECRET_ARN not in env


def test_archiver_function(synth: Synth) -> None:
    env = _props(synth, synth.stack.archive.function)["Environment"]["Variables"]
    assert env[c.ENV_LOG_ARCHIVE_BUCKET] == {"Ref": synth.logical_id(synth.stack.storage.bucket)}
    assert env[c.ENV_STATE_MACHINE_ARN] == {"Ref": synth.logical_id(synth.stack.pipeline.state_machine)}
    assert int(env[c.ENV_ARCHIVE_SWEEP_LOOKBACK_MINUTES]) >= 2 * c.SWEEP_RATE_MINUTES


def test_archiving_off_leaves_the_bucket_settings_empty(alt_synth: Synth) -> None:
    archiver = _props(alt_synth, alt_synth.stack.archive.function)["Environment"]["Variables"]
    api = _props(alt_synth, alt_synth.stack.api.function)["Environment"]["Variables"]
    assert archiver[c.ENV_LOG_ARCHIVE_BUCKET] == ""
    assert api[c.ENV_LOG_ARCHIVE_BUCKET] == ""
    assert api[c.ENV_REDIS_CLUSTER] == "false"  # a replication group: plain client

"""EventBridge rule → archiver (retry + DLQ), the sweep schedule, the bucket."""

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from buildlogs.statuses import TERMINAL
from infra.config import StackSettings, cdk_json_context
from infra.constants import ARCHIVE_PREFIX, SOURCES_PREFIX, SWEEP_EVENT
from tests.support.synth import Synth

SAMPLE_EVENT = Path(__file__).resolve().parents[1] / "events" / "sfn-execution-status-change.json"


def _one(synth: Synth, type_: str) -> dict[str, Any]:
    (resource,) = synth.resources(type_).values()
    return resource


def test_rule_matches_the_event_aws_emits_for_this_machine_only(synth: Synth) -> None:
    rule = _one(synth, "AWS::Events::Rule")["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": [str(status) for status in TERMINAL],
            "stateMachineArn": [{"Ref": synth.logical_id(synth.stack.pipeline.state_machine)}],
        },
    }
    assert set(TERMINAL) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    # the shape AWS emits (tests/events): the pattern's keys are in it
    event = json.loads(SAMPLE_EVENT.read_text())
    assert event["source"] == "aws.states"
    assert event["detail-type"] == "Step Functions Execution Status Change"
    assert event["detail"]["status"] in TERMINAL
    assert "stateMachineArn" in event["detail"]


def test_rule_targets_the_archiver_with_retries_and_a_dlq(synth: Synth) -> None:
    (target,) = _one(synth, "AWS::Events::Rule")["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.archive.function), "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 86400}
    queue = synth.logical_id(synth.stack.archive.dead_letter_queue)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}


def test_archiver_async_failures_land_in_the_dlq(synth: Synth) -> None:
    config = _one(synth, "AWS::Lambda::EventInvokeConfig")["Properties"]
    queue = synth.logical_id(synth.stack.archive.dead_letter_queue)
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}


def test_dlq_is_encrypted_and_ssl_only(synth: Synth) -> None:
    queue = _one(synth, "AWS::SQS::Queue")["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    synth.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_sweep_schedule_every_15_minutes_with_the_sweep_input(synth: Synth) -> None:
    schedule = _one(synth, "AWS::Scheduler::Schedule")["Properties"]
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.archive.function), "Arn"]}
    assert (
        json.loads(target["Input"])
        == SWEEP_EVENT
        == {
            "source": "buildlogs.sweep",
            "detail-type": "Scheduled Archive Sweep",
        }
    )
    assert "DeadLetterConfig" in target
    assert "RetryPolicy" in target


def test_bucket_encrypted_private_ssl_only_logged(synth: Synth) -> None:
    bucket_id = synth.logical_id(synth.stack.storage.bucket)
    bucket = synth.json["Resources"][bucket_id]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synth.logical_id(synth.stack.storage.access_logs)
    }
    synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )


def test_bucket_lifecycle_from_context(synth: Synth) -> None:
    settings = StackSettings.from_context(cdk_json_context())
    bucket = synth.json["Resources"][synth.logical_id(synth.stack.storage.bucket)]["Properties"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    archive = rules["archive-tiering"]
    assert archive["Prefix"] == ARCHIVE_PREFIX
    assert archive["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": settings.archive_transition_days}
    ]
    assert archive["ExpirationInDays"] == settings.archive_expiration_days
    assert rules["sources-expiry"]["Prefix"] == SOURCES_PREFIX
    assert rules["sources-expiry"]["ExpirationInDays"] == settings.sources_expiration_days
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_secret_has_no_value_in_code(synth: Synth) -> None:
    secret = _one(synth, "AWS::SecretsManager::Secret")
    assert "SecretString" not in secret["Properties"]
    assert secret["DeletionPolicy"] == "Retain"

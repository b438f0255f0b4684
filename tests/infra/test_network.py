"""VPC with NAT, the cache reachable only from the functions' security group over TLS."""

from typing import Any

from infra.constants import REDIS_PORT
from tests.support.synth import Synth


def _one(synth: Synth, type_: str) -> dict[str, Any]:
    (resource,) = synth.resources(type_).values()
    return resource


def test_vpc_private_subnets_with_nat_and_flow_logs(synth: Synth) -> None:
    assert len(synth.resources("AWS::EC2::NatGateway")) == 1  # cdk.json natGateways
    assert len(synth.resources("AWS::EC2::FlowLog")) == 1
    subnets = synth.resources("AWS::EC2::Subnet").values()
    assert sum(not s["Properties"]["MapPublicIpOnLaunch"] for s in subnets) == 2


def test_serverless_valkey_by_default(synth: Synth) -> None:
    cache = _one(synth, "AWS::ElastiCache::ServerlessCache")["Properties"]
    assert cache["Engine"] == "valkey"
    assert cache["SecurityGroupIds"] == [
        {"Fn::GetAtt": [synth.logical_id(synth.stack.network.cache_security_group), "GroupId"]}
    ]
    assert len(cache["SubnetIds"]) == 2
    assert not synth.resources("AWS::ElastiCache::ReplicationGroup")


def test_cache_ingress_only_from_the_functions_on_6379(synth: Synth) -> None:
    cache_sg = synth.logical_id(synth.stack.network.cache_security_group)
    lambda_sg = synth.logical_id(synth.stack.network.lambda_security_group)
    ingress = [
        r["Properties"]
        for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [cache_sg, "GroupId"]}
    ]
    assert ingress == [
        {
            "Description": "Redis (TLS) from the buildlogs functions",
            "FromPort": REDIS_PORT,
            "GroupId": {"Fn::GetAtt": [cache_sg, "GroupId"]},
            "IpProtocol": "tcp",
            "SourceSecurityGroupId": {"Fn::GetAtt": [lambda_sg, "GroupId"]},
            "ToPort": REDIS_PORT,
        }
    ]
    group = synth.json["Resources"][cache_sg]["Properties"]
    assert "SecurityGroupIngress" not in group  # no CIDR rules
    assert group["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"  # CDK's "no egress" marker


def test_node_based_valkey_has_tls_and_encryption(alt_synth: Synth) -> None:
    group = _one(alt_synth, "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert group["Engine"] == "valkey"
    assert group["EngineVersion"].startswith("7")
    assert group["TransitEncryptionEnabled"] is True
    assert group["AtRestEncryptionEnabled"] is True
    assert group["Port"] == REDIS_PORT
    assert group["MultiAZEnabled"] is True
    assert not alt_synth.resources("AWS::ElastiCache::ServerlessCache")

"""Network and cache: a VPC whose private subnets reach E2B through NAT, and the Redis for live logs."""

from aws_cdk import Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.common import retention_days, suppress
from infra.config import StackSettings
from infra.constants import REDIS_PORT


class NetworkAndCache(Construct):
    """VPC, the functions' security group, and an ElastiCache Valkey/Redis 7 reachable only from it."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.vpc = self._build_vpc()
        self.lambda_security_group = self._build_lambda_security_group()
        self.cache_security_group = self._build_cache_security_group()
        self.redis_host, self.redis_port = self._build_cache()
        self.redis_url = Fn.join("", ["rediss://", self.redis_host, ":", self.redis_port])
        self.redis_cluster = settings.redis_cluster

    @property
    def private_subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

    def _build_vpc(self) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=self._settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=retention_days(self._settings.log_retention_days))
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _build_lambda_security_group(self) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            description="buildlogs Lambda functions (egress: Redis, AWS APIs, E2B)",
            allow_all_outbound=True,
        )

    def _build_cache_security_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "CacheSecurityGroup",
            vpc=self.vpc,
            description="buildlogs Redis: TLS on 6379 from the functions only",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(
            self.lambda_security_group,
            ec2.Port.tcp(REDIS_PORT),
            "Redis (TLS) from the buildlogs functions",
        )
        return group

    def _build_cache(self) -> tuple[str, str]:
        if self._settings.cache_engine == "serverless-valkey":
            return self._build_serverless_cache()
        return self._build_replication_group()

    def _subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids

    def _build_serverless_cache(self) -> tuple[str, str]:
        # ElastiCache Serverless: TLS is always on, data encrypted at rest, Multi-AZ, cluster mode only.
        cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=f"buildlogs-{self._settings.env_name}",
            description="buildlogs live log streams",
            security_group_ids=[self.cache_security_group.security_group_id],
            subnet_ids=self._subnet_ids(),
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(maximum=10, unit="GB"),
            ),
            daily_snapshot_time="03:00",
            snapshot_retention_limit=1,
        )
        return cache.attr_endpoint_address, cache.attr_endpoint_port

    def _build_replication_group(self) -> tuple[str, str]:
        engine = self._settings.cache_engine  # "valkey" | "redis"
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "CacheSubnets",
            description="buildlogs Redis: private subnets",
            subnet_ids=self._subnet_ids(),
        )
        group = elasticache.CfnReplicationGroup(
            self,
            "Cache",
            replication_group_description="buildlogs live log streams",
            engine=engine,
            engine_version="7.2" if engine == "valkey" else "7.1",
            cache_node_type=self._settings.cache_node_type,
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            port=REDIS_PORT,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.cache_security_group.security_group_id],
            snapshot_retention_limit=1,
        )
        suppress(
            group,
            [
                (
                    "AwsSolutions-AEC6",
                    "No AUTH token: only the functions' security group reaches 6379, TLS is required, and a "
                    "token would have to travel in REDIS_URL (a plain env var); the serverless default has "
                    "the same access model",
                )
            ],
        )
        return group.attr_primary_end_point_address, group.attr_primary_end_point_port

"""The network: VPC, a public and a private subnet per AZ, internet and NAT gateways, flow logs;
or a VPC the user already has, read through the EC2 API."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from etcd_stack import config
from etcd_stack.addressing import ZonePlan, plan_zones
from etcd_stack.cloud.iam import policy
from etcd_stack.config import NatStrategy, StackConfig, SubnetFacts
from etcd_stack.tags import tagged


@dataclass(frozen=True)
class NetworkArgs:
    cidr: ipaddress.IPv4Network
    availability_zones: Sequence[str]
    nat_strategy: NatStrategy
    flow_log_retention_days: int
    tags: Mapping[str, str]


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    zones: tuple[ZonePlan, ...]
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    nat_gateways: list[aws.ec2.NatGateway]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:network:Network", name, None, opts)
        self._name = name
        self._tags = args.tags
        self.cidr = args.cidr
        self.zones = plan_zones(args.cidr, args.availability_zones)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            # Route 53 private zones and SSM endpoints need both.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tagged(args.tags, f"{name}-vpc"),
            opts=child,
        )
        # Adopting the default group with no rules removes the ones AWS put there (EC2.2).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            ingress=[],
            egress=[],
            tags=tagged(args.tags, f"{name}-default-sg"),
            opts=child,
        )
        self.public_subnets = [self._subnet(zone, public=True) for zone in self.zones]
        self.private_subnets = [self._subnet(zone, public=False) for zone in self.zones]

        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=tagged(args.tags, f"{name}-igw"), opts=child
        )
        self.internet_gateway = gateway
        public_table = self._route_table(f"{name}-public", gateway_id=gateway.id)
        for zone, subnet in zip(self.zones, self.public_subnets, strict=True):
            self._associate(f"{name}-public-{zone.index}", subnet, public_table)

        nat_count = 1 if args.nat_strategy is NatStrategy.SINGLE else len(self.zones)
        self.nat_gateways = [self._nat_gateway(i, gateway) for i in range(nat_count)]
        for zone, subnet in zip(self.zones, self.private_subnets, strict=True):
            nat = self.nat_gateways[zone.index % nat_count]
            table = self._route_table(f"{name}-private-{zone.index}", nat_gateway_id=nat.id)
            self._associate(f"{name}-private-{zone.index}", subnet, table)

        self._flow_logs(args.flow_log_retention_days)

        self.vpc_id = self.vpc.id
        self.private_subnet_ids = [subnet.id for subnet in self.private_subnets]
        self.public_subnet_ids = [subnet.id for subnet in self.public_subnets]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _subnet(self, zone: ZonePlan, public: bool) -> aws.ec2.Subnet:
        kind = "public" if public else "private"
        name = f"{self._name}-{kind}-{zone.index}"
        return aws.ec2.Subnet(
            name,
            vpc_id=self.vpc.id,
            cidr_block=str(zone.public if public else zone.private),
            availability_zone=zone.availability_zone,
            # Nothing gets a public address by default; the bastion asks for one itself (EC2.15).
            map_public_ip_on_launch=False,
            tags={**tagged(self._tags, name), "tier": kind},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _route_table(self, name: str, **target: pulumi.Input[str]) -> aws.ec2.RouteTable:
        table = aws.ec2.RouteTable(
            name, vpc_id=self.vpc.id, tags=tagged(self._tags, name), opts=pulumi.ResourceOptions(parent=self)
        )
        aws.ec2.Route(
            f"{name}-default",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            opts=pulumi.ResourceOptions(parent=self),
            **target,
        )
        return table

    def _associate(self, name: str, subnet: aws.ec2.Subnet, table: aws.ec2.RouteTable) -> None:
        aws.ec2.RouteTableAssociation(
            name, subnet_id=subnet.id, route_table_id=table.id, opts=pulumi.ResourceOptions(parent=self)
        )

    def _nat_gateway(self, index: int, gateway: aws.ec2.InternetGateway) -> aws.ec2.NatGateway:
        name = f"{self._name}-nat-{index}"
        address = aws.ec2.Eip(
            f"{name}-eip", domain="vpc", tags=tagged(self._tags, f"{name}-eip"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.ec2.NatGateway(
            name,
            allocation_id=address.id,
            subnet_id=self.public_subnets[index].id,
            tags=tagged(self._tags, name),
            # A NAT gateway needs the internet gateway attached before it can route.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )

    def _flow_logs(self, retention_days: int) -> None:
        name = f"{self._name}-flow-logs"
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            name, retention_in_days=retention_days, tags=tagged(self._tags, name), opts=child
        )
        role = aws.iam.Role(
            name, assume_role_policy=self.vpc.arn.apply(_flow_log_trust), tags=tagged(self._tags, name), opts=child
        )
        aws.iam.RolePolicy(
            name,
            role=role.id,
            policy=group.arn.apply(
                lambda arn: policy(
                    {
                        "Effect": "Allow",
                        "Action": [
                            "logs:CreateLogStream",
                            "logs:PutLogEvents",
                            "logs:DescribeLogStreams",
                        ],
                        "Resource": [arn, f"{arn}:*"],
                    },
                    # Listing log groups takes no resource but "*" (service authorization reference, CloudWatch Logs).
                    {"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"},
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            name,
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=tagged(self._tags, name),
            opts=child,
        )


@dataclass(frozen=True)
class ExistingNetwork:
    """A VPC the user already has (etcd:vpcId): its private subnets as the EC2 API describes them."""

    vpc_id: str
    cidr: ipaddress.IPv4Network
    zones: tuple[ZonePlan, ...]
    private_subnet_ids: list[str]
    public_subnet_ids: list[str] = field(default_factory=list)
    nat_gateways: list[aws.ec2.NatGateway] = field(default_factory=list)
    internet_gateway: aws.ec2.InternetGateway | None = None


def existing_network(cfg: StackConfig) -> ExistingNetwork:
    """Reads the VPC and subnets from the EC2 API and checks them before anything is registered."""
    vpc = config.look_up("etcd:vpcId", cfg.vpc_id, cfg.region, lambda vpc_id: aws.ec2.get_vpc(id=vpc_id))
    facts = []
    for subnet_id in cfg.private_subnet_ids:
        subnet = config.look_up("etcd:privateSubnetIds", subnet_id, cfg.region,
                                lambda subnet_id: aws.ec2.get_subnet(id=subnet_id))
        facts.append(SubnetFacts(subnet_id, subnet.vpc_id, ipaddress.IPv4Network(subnet.cidr_block),
                                 subnet.availability_zone))
    config.check_existing_network(cfg, (vpc.enable_dns_support, vpc.enable_dns_hostnames), facts)
    zones = tuple(ZonePlan(index, fact.availability_zone, fact.cidr) for index, fact in enumerate(facts))
    return ExistingNetwork(cfg.vpc_id, ipaddress.IPv4Network(vpc.cidr_block), zones, list(cfg.private_subnet_ids))
def _flow_log_trust(vpc_arn: str) -> str:
    """The flow-logs service may take the role only for this account's flow logs (the confused deputy: AWS
    recommends aws:SourceAccount and aws:SourceArn in this trust policy). The VPC's ARN names partition,
    region and account."""
    _, partition, _, region, account, _ = vpc_arn.split(":", 5)
    return policy({
        "Effect": "Allow",
        "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account}:vpc-flow-log/*"},
        },
    })


ZONE_COUNT = 3


def availability_zones(region: str) -> list[str]:
    """The first three AZs of the region open to every account (no opt-in Local Zones)."""
    found = aws.get_availability_zones(
        state="available",
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
    )
    names = sorted(found.names)[:ZONE_COUNT]
    if len(names) < ZONE_COUNT:
        raise pulumi.RunError(
            f"aws:region: {region!r} offers {len(names)} availability zones to this account; "
            f"the stack needs {ZONE_COUNT} so that losing one keeps a majority of members"
        )
    return names

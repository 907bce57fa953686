"""Names inside the VPC: a private Route 53 zone, one record per member, the client endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.addressing import MemberPlan
from etcd_stack.tags import tagged

MEMBER_TTL = 60


def domain(cluster_name: str) -> str:
    return f"{cluster_name}.internal"


def client_endpoint(cluster_name: str) -> str:
    return f"client.{domain(cluster_name)}"


@dataclass(frozen=True)
class DnsArgs:
    domain: str
    client_endpoint: str
    vpc_id: pulumi.Input[str]
    members: Sequence[MemberPlan]
    load_balancer_dns_name: pulumi.Input[str]
    load_balancer_zone_id: pulumi.Input[str]
    tags: Mapping[str, str]


class ClusterDns(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]

    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:dns:ClusterDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.Zone(
            name,
            name=args.domain,
            comment="etcd member and client names",
            vpcs=[{"vpc_id": args.vpc_id}],
            tags=tagged(args.tags, name),
            opts=child,
        )
        for member in args.members:
            aws.route53.Record(
                f"{name}-{member.name}",
                zone_id=zone.zone_id,
                name=member.dns_name,
                type="A",
                ttl=MEMBER_TTL,
                records=[member.ip],
                opts=child,
            )
        aws.route53.Record(
            f"{name}-client",
            zone_id=zone.zone_id,
            name=args.client_endpoint,
            type="A",
            aliases=[{
                "name": args.load_balancer_dns_name,
                "zone_id": args.load_balancer_zone_id,
                "evaluate_target_health": True,
            }],
            opts=child,
        )
        self.zone_id = zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})

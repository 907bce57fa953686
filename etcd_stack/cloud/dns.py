"""Names inside the VPC: a private Route 53 zone, one record per member, the client endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.addressing import MemberPlan
from etcd_stack.naming import domain
from etcd_stack.tags import tagged

MEMBER_TTL = 60


def client_endpoint(stack: str, cluster_name: str) -> str:
    return f"client.{domain(stack, cluster_name)}"


@dataclass(frozen=True)
class DnsArgs:
    domain: str
    client_endpoint: str
    vpc_id: pulumi.Input[str]
    members: Sequence[MemberPlan]
    load_balancer_ips: Sequence[str]
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
        def record(logical: str, fqdn: str, ips: list[str]) -> None:
            aws.route53.Record(logical, zone_id=zone.zone_id, name=fqdn, type="A", ttl=MEMBER_TTL, records=ips,
                               opts=child)

        for member in args.members:
            record(f"{name}-{member.name}", member.dns_name, [member.ip])
        # The balancer's addresses are fixed and planned, so the name need not wait for the balancer to exist.
        record(f"{name}-client", args.client_endpoint, list(args.load_balancer_ips))
        self.zone_id = zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})

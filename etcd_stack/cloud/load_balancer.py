"""The internal Network Load Balancer in front of the members' client port.

TCP passthrough: etcd clients speak gRPC over HTTP/2 with mutual TLS, which only a layer-4
balancer passes through untouched. Targets are the members' fixed addresses, so replacing an
instance needs no change here. Health is etcd's own `/health` on the plain-HTTP metrics port:
it needs no client certificate and answers 503 while the member has no leader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.addressing import MemberPlan
from etcd_stack.member.rendering import CLIENT_PORT, METRICS_PORT
from etcd_stack.tags import tagged


@dataclass(frozen=True)
class LoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    members: Sequence[MemberPlan]
    # The balancer's own fixed address in each subnet (addressing.plan_load_balancer), apart from the members'.
    addresses: Sequence[str]
    tags: Mapping[str, str]
    # Set at creation or never: AWS cannot add a security group to an NLB made without one.
    security_group_id: pulumi.Input[str]


class ClientLoadBalancer(pulumi.ComponentResource):
    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:loadbalancer:ClientLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        balancer = aws.lb.LoadBalancer(
            name,
            internal=True,
            load_balancer_type="network",
            subnet_mappings=[{"subnet_id": subnet, "private_ipv4_address": address}
                             for subnet, address in zip(args.subnet_ids, args.addresses, strict=True)],
            enable_cross_zone_load_balancing=True,
            security_groups=[args.security_group_id],
            tags=tagged(args.tags, name),
            opts=child,
        )
        targets = aws.lb.TargetGroup(
            name,
            vpc_id=args.vpc_id,
            port=CLIENT_PORT,
            protocol="TCP",
            target_type="ip",
            deregistration_delay=30,
            health_check={
                "protocol": "HTTP",
                "port": str(METRICS_PORT),
                "path": "/health",
                "matcher": "200",
                "interval": 10,
                "healthy_threshold": 2,
                "unhealthy_threshold": 2,
            },
            tags=tagged(args.tags, name),
            opts=child,
        )
        aws.lb.Listener(
            name,
            load_balancer_arn=balancer.arn,
            port=CLIENT_PORT,
            protocol="TCP",
            default_actions=[{"type": "forward", "target_group_arn": targets.arn}],
            tags=tagged(args.tags, name),
            opts=child,
        )
        for member in args.members:
            aws.lb.TargetGroupAttachment(
                f"{name}-{member.name}",
                target_group_arn=targets.arn,
                target_id=member.ip,
                port=CLIENT_PORT,
                opts=child,
            )
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.arn_suffix = balancer.arn_suffix
        self.target_group_arn_suffix = targets.arn_suffix
        self.register_outputs({"dns_name": self.dns_name})

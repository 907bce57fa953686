"""Subnet plan: which CIDR each subnet gets, carved from the VPC range without overlap."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ZonePlan:
    index: int
    availability_zone: str
    private: ipaddress.IPv4Network
    public: ipaddress.IPv4Network


def plan_zones(vpc: ipaddress.IPv4Network, zones: Sequence[str]) -> tuple[ZonePlan, ...]:
    """Three quarters of the range go to private subnets (the members live there); the last
    quarter is cut into sixteenths for the small public subnets (NAT gateways, the bastion).
    A /24 VPC still yields /26 private and /28 public subnets, the smallest AWS allows."""
    if len(zones) > 3:
        raise ValueError(f"at most 3 availability zones fit the plan, got {len(zones)}")
    quarters = list(vpc.subnets(prefixlen_diff=2))
    public_blocks = list(quarters[3].subnets(prefixlen_diff=2))
    return tuple(
        ZonePlan(index=i, availability_zone=zone, private=quarters[i], public=public_blocks[i])
        for i, zone in enumerate(zones)
    )


# Members take host addresses from .10 up in their zone's private subnet, clear of the four AWS
# reserves at the start. The load balancer's nodes take addresses after the members' interfaces exist.
FIRST_MEMBER_HOST = 10


@dataclass(frozen=True)
class MemberPlan:
    index: int
    name: str
    dns_name: str
    ip: str
    availability_zone: str
    zone_index: int


def member_name(index: int) -> str:
    return f"etcd-{index}"


def plan_members(size: int, zones: Sequence[ZonePlan], domain: str) -> tuple[MemberPlan, ...]:
    """Members round-robin over the zones, each with a fixed address and name known before any instance."""
    members = []
    for index in range(size):
        zone = zones[index % len(zones)]
        ip = str(zone.private[FIRST_MEMBER_HOST + index // len(zones)])
        name = member_name(index)
        members.append(MemberPlan(index, name, f"{name}.{domain}", ip, zone.availability_zone, zone.index))
    return tuple(members)

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

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
    # None in a VPC the stack did not create: it has no public subnets of its own.
    public: ipaddress.IPv4Network | None = None


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


# Members take host addresses from .10 up in their zone's private subnet, the load balancer from .6 up,
# clear of the four AWS reserves at the start: fixed on both sides, so neither waits for the other.
FIRST_MEMBER_HOST = 10
LOAD_BALANCER_HOST = 6


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


def plan_members(size: int, zones: Sequence[ZonePlan], domain: str,
                 ips: Sequence[ipaddress.IPv4Address] = ()) -> tuple[MemberPlan, ...]:
    """Members round-robin over the zones, each with a fixed address and name known before any instance;
    given addresses (etcd:memberIps, already checked to lie in the subnets) place each in its address's zone."""
    members = []
    for index in range(size):
        if ips:
            address = ips[index]
            zone = next(zone for zone in zones if address in zone.private)
        else:
            zone = zones[index % len(zones)]
            address = zone.private[FIRST_MEMBER_HOST + index // len(zones)]
        name = member_name(index)
        members.append(MemberPlan(index, name, f"{name}.{domain}", str(address), zone.availability_zone, zone.index))
    return tuple(members)


def plan_load_balancer(zones: Sequence[ZonePlan], members: Sequence[MemberPlan]) -> tuple[str, ...]:
    """The load balancer's own address in each zone: the first from host 6 up that no member holds."""
    taken = {member.ip for member in members}
    return tuple(
        next(str(address) for address in zone.private.hosts()
             if int(address) - int(zone.private.network_address) >= LOAD_BALANCER_HOST and str(address) not in taken)
        for zone in zones
    )

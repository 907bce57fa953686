import ipaddress
import itertools

import pytest

from etcd_stack.addressing import plan_zones

ZONES = ["eu-west-2a", "eu-west-2b", "eu-west-2c"]


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.31.0.0/17", "192.168.4.0/22", "10.9.8.0/24"])
def test_subnets_lie_inside_the_vpc_and_never_overlap(cidr):
    vpc = ipaddress.IPv4Network(cidr)
    plan = plan_zones(vpc, ZONES)
    subnets = [zone.private for zone in plan] + [zone.public for zone in plan]
    assert all(subnet.subnet_of(vpc) for subnet in subnets)
    for a, b in itertools.combinations(subnets, 2):
        assert not a.overlaps(b), (a, b)


def test_each_zone_gets_one_public_and_one_private_subnet_in_order():
    plan = plan_zones(ipaddress.IPv4Network("10.0.0.0/16"), ZONES)
    assert [zone.availability_zone for zone in plan] == ZONES
    assert [str(zone.private) for zone in plan] == ["10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18"]
    assert [str(zone.public) for zone in plan] == ["10.0.192.0/20", "10.0.208.0/20", "10.0.224.0/20"]


def test_the_smallest_vpc_still_meets_the_aws_minimum_subnet():
    plan = plan_zones(ipaddress.IPv4Network("10.9.8.0/24"), ZONES)
    assert {zone.public.prefixlen for zone in plan} == {28}
    assert {zone.private.prefixlen for zone in plan} == {26}


def test_more_zones_than_the_plan_holds_are_refused():
    with pytest.raises(ValueError, match="at most 3"):
        plan_zones(ipaddress.IPv4Network("10.0.0.0/16"), [*ZONES, "eu-west-2d"])

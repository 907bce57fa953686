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


def test_the_load_balancer_takes_host_6_of_each_zone_apart_from_the_members():
    from etcd_stack.addressing import plan_load_balancer, plan_members

    plan = plan_zones(ipaddress.IPv4Network("10.9.8.0/24"), ZONES)
    members = plan_members(7, plan, "etcd.dev.internal")
    addresses = plan_load_balancer(plan, members)
    assert addresses == ("10.9.8.6", "10.9.8.70", "10.9.8.134")
    assert not set(addresses) & {member.ip for member in members}
    assert max(int(m.ip.split(".")[-1]) - int(str(plan[m.zone_index].private.network_address).split(".")[-1])
               for m in members) == 12


def test_given_member_addresses_decide_each_member_zone_and_move_the_load_balancer_aside():
    from etcd_stack.addressing import plan_load_balancer, plan_members

    plan = plan_zones(ipaddress.IPv4Network("10.0.0.0/16"), ZONES)
    ips = [ipaddress.IPv4Address(a) for a in ("10.0.64.6", "10.0.0.99", "10.0.128.20")]
    members = plan_members(3, plan, "etcd.dev.internal", ips)
    assert [(m.ip, m.availability_zone, m.zone_index) for m in members] == [
        ("10.0.64.6", "eu-west-2b", 1), ("10.0.0.99", "eu-west-2a", 0), ("10.0.128.20", "eu-west-2c", 2)]
    assert plan_load_balancer(plan, members) == ("10.0.0.6", "10.0.64.7", "10.0.128.6")

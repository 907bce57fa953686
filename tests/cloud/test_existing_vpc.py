"""Deploying into a VPC the user already has (etcd:vpcId): nothing of the network is created, members and the
load balancer get addresses inside the given subnets, whose zones and ranges come from the EC2 API."""

from __future__ import annotations

import ipaddress

import pytest

from etcd_stack.config import reserved
from etcd_stack.preview import offline
from etcd_stack.preview.mocks import EXISTING_SUBNETS, EXISTING_VPCS
from tests.conftest import encode

VPC_ID = "vpc-0a1b2c3d4e5f60718"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719", "subnet-0c1d2e3f4a5b6071a"]
NETWORK_TYPES = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip",
    "aws:ec2/internetGateway:InternetGateway", "aws:ec2/routeTable:RouteTable", "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
}


def run_in_vpc(**etcd):
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static", "etcd:vpcId": VPC_ID,
           "etcd:privateSubnetIds": encode(SUBNETS)}
    raw.update({f"etcd:{key}": encode(value) for key, value in etcd.items()})
    return offline.run(raw, "test")


@pytest.fixture(scope="module")
def stack():
    return run_in_vpc(clusterSize=5)


def subnet_cidr(subnet_id: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(EXISTING_SUBNETS[subnet_id][1])


def test_no_network_resource_is_created(stack):
    assert not {r.type for r in stack.resources} & NETWORK_TYPES
    # The one log group left is the backup bucket's record of arriving snapshots, not flow logs.
    assert [r.name for r in stack.of_type("aws:cloudwatch/logGroup:LogGroup")] == ["etcd-backup-arrivals"]
    assert stack.outputs["vpcId"] == VPC_ID and stack.outputs["privateSubnetIds"] == SUBNETS
    assert stack.outputs["publicSubnetIds"] == [] and stack.outputs["natGatewayPublicIps"] == []


def test_members_live_in_the_given_subnets_round_robin_clear_of_the_aws_reserves(stack):
    interfaces = sorted(stack.of_type("aws:ec2/networkInterface:NetworkInterface"), key=lambda r: r.name)
    assert [i.inputs["subnetId"] for i in interfaces] == [SUBNETS[i % 3] for i in range(5)]
    for interface in interfaces:
        (address,) = map(ipaddress.IPv4Address, interface.inputs["privateIps"])
        cidr = subnet_cidr(interface.inputs["subnetId"])
        assert address in cidr and address not in reserved(cidr)
    zones = {m["name"]: m["availabilityZone"] for m in stack.outputs["members"]}
    assert zones == {f"etcd-{i}": f"eu-west-2{'abc'[i % 3]}" for i in range(5)}
    volumes = {v.name: v.inputs["availabilityZone"] for v in stack.of_type("aws:ebs/volume:Volume")}
    assert volumes == {f"etcd-etcd-{i}-data": zones[f"etcd-{i}"] for i in range(5)}


def test_security_groups_and_the_names_belong_to_that_vpc(stack):
    for group in stack.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert group.inputs["vpcId"] == VPC_ID
    (target_group,) = stack.of_type("aws:lb/targetGroup:TargetGroup")
    assert target_group.inputs["vpcId"] == VPC_ID
    (zone,) = stack.of_type("aws:route53/zone:Zone")
    assert zone.inputs["vpcs"] == [{"vpcId": VPC_ID}]
    # Clients inside the VPC reach the client port: the VPC's own range, as the EC2 API gives it.
    rules = stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    cidrs = {r.inputs.get("cidrIpv4") for r in rules if r.inputs["fromPort"] == 2379} - {None}
    assert cidrs == {EXISTING_VPCS[VPC_ID][0]}


def test_the_load_balancer_takes_its_own_addresses_in_the_given_subnets(stack):
    (balancer,) = stack.of_type("aws:lb/loadBalancer:LoadBalancer")
    members = {m["ip"] for m in stack.outputs["members"]}
    mappings = balancer.inputs["subnetMappings"]
    assert [m["subnetId"] for m in mappings] == SUBNETS
    for mapping in mappings:
        address, cidr = ipaddress.IPv4Address(mapping["privateIpv4Address"]), subnet_cidr(mapping["subnetId"])
        assert address in cidr and address not in reserved(cidr) and str(address) not in members


def test_given_member_addresses_are_used_and_place_each_member_in_its_zone():
    # The load balancer's usual host (.6) is taken by a member here: it moves to the next free one.
    ips = ["10.50.32.6", "10.50.0.200", "10.50.16.77"]
    run = run_in_vpc(memberIps=ips)
    members = run.outputs["members"]
    assert [m["ip"] for m in members] == ips
    assert [m["availabilityZone"] for m in members] == ["eu-west-2c", "eu-west-2a", "eu-west-2b"]
    (balancer,) = run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert [m["privateIpv4Address"] for m in balancer.inputs["subnetMappings"]] == [
        "10.50.0.6", "10.50.16.6", "10.50.32.7"]


@pytest.mark.parametrize(("subnets", "ips", "message"), [
    ([*SUBNETS[:2], "subnet-0e1f2a3b4c5d6071c"], None,
     "etcd:privateSubnetIds: 'subnet-0e1f2a3b4c5d6071c' is not allowed: subnets of etcd:vpcId vpc-0a1b2c3d4e5f60718; "
     "it is in vpc-0b2c3d4e5f6071829"),
    ([*SUBNETS[:2], "subnet-0d1e2f3a4b5c6071b"], None,
     "etcd:privateSubnetIds: 'eu-west-2a, eu-west-2b, eu-west-2a' is not allowed: one subnet per availability zone"),
    (SUBNETS, ["10.50.0.10", "10.50.16.10", "10.50.32.255"],
     "etcd:memberIps: '10.50.32.255' is not allowed: addresses inside etcd:privateSubnetIds (10.50.0.0/20, "
     "10.50.16.0/20, 10.50.32.0/24), not one of the five AWS reserves in each"),
])
def test_what_the_ec2_api_answers_is_checked_before_anything_is_registered(subnets, ips, message):
    from etcd_stack import config

    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:vpcId": VPC_ID,
           "etcd:privateSubnetIds": encode(subnets)}
    if ips:
        raw["etcd:memberIps"] = encode(ips)
    monitor = offline.RecordingMonitor(offline.StackMocks("eu-west-2", "test"))
    with pytest.raises(config.ConfigError) as caught:
        offline.execute(raw, "test", monitor)
    assert str(caught.value) == message
    assert monitor.registered == []


def test_the_policy_pack_finds_nothing_in_the_stack(stack):
    from etcd_stack.preview.wire import reveal
    from policy.controls import Resource, violations

    resources = [Resource(r.type, r.name, reveal({**r.inputs, **r.state}), r.property_dependencies)
                 for r in stack.resources]
    assert {name: found for name, found in violations(resources).items() if found} == {}

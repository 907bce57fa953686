from __future__ import annotations

import fnmatch
import ipaddress
import itertools
import json

import pytest

SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
TABLE = "aws:ec2/routeTable:RouteTable"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
NAT = "aws:ec2/natGateway:NatGateway"
IGW = "aws:ec2/internetGateway:InternetGateway"
VPC = "aws:ec2/vpc:Vpc"

# Types whose AWS API takes no tags.
UNTAGGED = {
    ROUTE, ASSOCIATION, "aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:route53/record:Record", "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:ec2/volumeAttachment:VolumeAttachment",
    # KMS tags keys only; an alias has no tags of its own (KMS API reference, TagResource).
    "aws:kms/alias:Alias",
    # The bucket carries the tags; its settings are separate resources without their own.
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
    "aws:s3/bucketNotification:BucketNotification",
    # AWS keeps no tags on these.
    "aws:cloudwatch/eventTarget:EventTarget", "aws:cloudwatch/logResourcePolicy:LogResourcePolicy",
    "aws:cloudwatch/dashboard:Dashboard",
}


@pytest.fixture(scope="module")
def stack(request):
    from etcd_stack.preview import offline
    from tests.conftest import encode

    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:vpcCidr": "10.20.0.0/16",
           "etcd:natStrategy": "single", "etcd:tags": encode({"team": "platform"})}
    return offline.run(raw, "test")


def subnets(run, tier):
    return [s for s in run.of_type(SUBNET) if s.inputs["tags"]["tier"] == tier]


def default_route(run, subnet):
    """The 0.0.0.0/0 route of the table the subnet is associated with."""
    (association,) = [a for a in run.of_type(ASSOCIATION) if a.inputs["subnetId"] == subnet.id]
    routes = [r for r in run.of_type(ROUTE) if r.inputs["routeTableId"] == association.inputs["routeTableId"]]
    assert len(routes) == 1 and routes[0].inputs["destinationCidrBlock"] == "0.0.0.0/0"
    return routes[0]


def test_one_public_and_one_private_subnet_per_availability_zone(stack):
    zones = ["eu-west-2a", "eu-west-2b", "eu-west-2c"]
    for tier in ("public", "private"):
        assert sorted(s.inputs["availabilityZone"] for s in subnets(stack, tier)) == zones


def test_subnets_lie_inside_the_vpc_and_do_not_overlap(stack):
    (vpc,) = stack.of_type(VPC)
    cidr = ipaddress.IPv4Network(vpc.inputs["cidrBlock"])
    assert str(cidr) == "10.20.0.0/16"
    blocks = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in stack.of_type(SUBNET)]
    assert len(blocks) == 6
    assert all(block.subnet_of(cidr) for block in blocks)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(blocks, 2))
    assert all(s.inputs["vpcId"] == vpc.id for s in stack.of_type(SUBNET))


def test_no_subnet_hands_out_public_addresses(stack):
    assert [s.inputs["mapPublicIpOnLaunch"] for s in stack.of_type(SUBNET)] == [False] * 6


def test_the_vpc_resolves_dns_for_private_zones(stack):
    (vpc,) = stack.of_type(VPC)
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True


def test_public_subnets_route_through_the_internet_gateway(stack):
    (gateway,) = stack.of_type(IGW)
    for subnet in subnets(stack, "public"):
        route = default_route(stack, subnet)
        assert route.inputs.get("gatewayId") == gateway.id
        assert "natGatewayId" not in route.inputs


def test_private_subnets_route_through_nat_never_the_internet_gateway(stack):
    nat_ids = {nat.id for nat in stack.of_type(NAT)}
    for subnet in subnets(stack, "private"):
        route = default_route(stack, subnet)
        assert route.inputs.get("natGatewayId") in nat_ids
        assert "gatewayId" not in route.inputs


def test_single_nat_gateway_sits_in_a_public_subnet_with_its_own_address(stack):
    (nat,) = stack.of_type(NAT)
    assert stack.by_id(nat.inputs["subnetId"]).inputs["tags"]["tier"] == "public"
    eip = stack.by_id(nat.inputs["allocationId"])
    assert eip.inputs["domain"] == "vpc"
    assert stack.outputs["natGatewayPublicIps"] == [eip.state["publicIp"]]


def test_one_nat_gateway_per_zone_keeps_egress_inside_each_zone(run_stack):
    run = run_stack(natStrategy="one-per-az", bastion=False)
    nats = run.of_type(NAT)
    assert len(nats) == 3
    for subnet in subnets(run, "private"):
        nat = run.by_id(default_route(run, subnet).inputs["natGatewayId"])
        assert run.by_id(nat.inputs["subnetId"]).inputs["availabilityZone"] == subnet.inputs["availabilityZone"]
    assert len(set(run.outputs["natGatewayPublicIps"])) == 3


def test_the_default_security_group_keeps_no_rules(stack):
    (group,) = stack.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert group.inputs["ingress"] == [] and group.inputs["egress"] == []
    assert group.inputs["vpcId"] == stack.of_type(VPC)[0].id


def test_flow_logs_capture_all_traffic_into_a_log_group_with_retention(stack):
    (flow_log,) = stack.of_type("aws:ec2/flowLog:FlowLog")
    group = stack.named("etcd-flow-logs", "aws:cloudwatch/logGroup:LogGroup")
    assert flow_log.inputs["vpcId"] == stack.of_type(VPC)[0].id
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow_log.inputs["logDestination"] == group.state["arn"]
    assert group.inputs["retentionInDays"] == 90
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.state["arn"] == flow_log.inputs["iamRoleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    policy = stack.named("etcd-flow-logs", "aws:iam/rolePolicy:RolePolicy")
    statement = json.loads(policy.inputs["policy"])["Statement"][0]
    assert statement["Resource"] == [group.state["arn"], group.state["arn"] + ":*"]


def test_flow_log_retention_follows_config(run_stack):
    run = run_stack(flowLogRetentionDays=365, bastion=False)
    assert run.named("etcd-flow-logs", "aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 365


def test_every_aws_resource_carries_its_name_and_the_common_tags(stack):
    aws_resources = [r for r in stack.resources if r.type.startswith("aws:") and r.type not in UNTAGGED]
    assert aws_resources
    for resource in aws_resources:
        tags = resource.inputs.get("tags")
        assert tags is not None, resource.name
        assert tags["Name"] == resource.name
        assert tags["team"] == "platform" and tags["etcd-cluster"] == "etcd" and tags["pulumi-stack"] == "test"


def test_children_hang_under_their_component(stack):
    for resource in stack.resources:
        parents = [r for r in stack.resources if r.name == resource.parent and r.type.startswith("etcd-aws:")]
        if resource.type.startswith("etcd-aws:"):
            assert resource.parent is None, resource.name
        elif resource.type.startswith(("aws:", "tls:")) or resource.parent is not None:
            assert len(parents) == 1, resource.name


def test_outputs_list_the_subnets(stack):
    private = [s.id for s in sorted(subnets(stack, "private"), key=lambda s: s.name)]
    assert stack.outputs["privateSubnetIds"] == private
    assert stack.outputs["vpcId"] == stack.of_type(VPC)[0].id


def trust_allows(document: dict, service: str, context: dict[str, str]) -> bool:
    """IAM's answer for sts:AssumeRole by a service principal with the request's context keys: an Allow whose
    principal, action and every condition match, and no matching Deny (StringEquals and ArnLike only; a
    condition on a key the request lacks does not match)."""
    def matches(statement: dict) -> bool:
        if statement["Principal"] != {"Service": service} or statement["Action"] != "sts:AssumeRole":
            return False
        tests = {"StringEquals": lambda value, want: value == want,
                 "ArnLike": lambda value, want: fnmatch.fnmatchcase(value, want)}
        for operator, keys in statement.get("Condition", {}).items():
            for key, want in keys.items():
                if key not in context or not tests[operator](context[key], want):
                    return False
        return True

    matching = [s["Effect"] for s in document["Statement"] if matches(s)]
    return "Allow" in matching and "Deny" not in matching


def test_the_flow_log_service_may_take_the_role_only_for_this_accounts_flow_logs(stack):
    (flow_log,) = stack.of_type("aws:ec2/flowLog:FlowLog")
    role = next(r for r in stack.of_type("aws:iam/role:Role") if r.state["arn"] == flow_log.inputs["iamRoleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])
    _, _, _, region, account, _ = stack.of_type(VPC)[0].state["arn"].split(":", 5)
    ours = {"aws:SourceAccount": account, "aws:SourceArn": f"arn:aws:ec2:{region}:{account}:vpc-flow-log/fl-1234"}
    assert trust_allows(trust, "vpc-flow-logs.amazonaws.com", ours)
    other = "210987654321"
    theirs = {"aws:SourceAccount": other, "aws:SourceArn": f"arn:aws:ec2:{region}:{other}:vpc-flow-log/x"}
    assert not trust_allows(trust, "vpc-flow-logs.amazonaws.com", theirs)
    # The confused deputy: the service working for another account names that account's flow log.
    assert not trust_allows(trust, "vpc-flow-logs.amazonaws.com",
                            {**ours, "aws:SourceArn": f"arn:aws:ec2:{region}:{other}:vpc-flow-log/fl-1234"})
    assert not trust_allows(trust, "vpc-flow-logs.amazonaws.com", {})
    assert not trust_allows(trust, "ec2.amazonaws.com", ours)

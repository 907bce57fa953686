"""Two stacks with the same etcd:clusterName in one account and region (and in one existing VPC) share no
name that AWS requires to be unique there."""

from __future__ import annotations

import re

import pytest

from etcd_stack import naming
from etcd_stack.preview import offline
from tests.conftest import encode

# Types whose name AWS keeps unique within a scope, and the input that names them. Left unset, Pulumi
# auto-names the resource: its logical name and a random suffix, so stacks stand side by side (Pulumi FAQ).
UNIQUE_NAMES = {
    "aws:ssm/parameter:Parameter": ("account and region", "name"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("account and region", "name"),
    "aws:cloudwatch/logGroup:LogGroup": ("account and region", "name"),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("account and region", "policyName"),
    "aws:cloudwatch/eventRule:EventRule": ("event bus", "name"),
    "aws:cloudwatch/dashboard:Dashboard": ("account", "dashboardName"),
    "aws:lb/loadBalancer:LoadBalancer": ("account and region", "name"),
    "aws:lb/targetGroup:TargetGroup": ("account and region", "name"),
    "aws:ec2/keyPair:KeyPair": ("account and region", "keyName"),
    "aws:kms/alias:Alias": ("account and region", "name"),
    "aws:sns/topic:Topic": ("account and region", "name"),
    "aws:iam/role:Role": ("account", "name"),
    "aws:iam/instanceProfile:InstanceProfile": ("account", "name"),
    "aws:iam/policy:Policy": ("account", "name"),
    "aws:s3/bucket:Bucket": ("partition", "bucket"),
    "aws:ec2/securityGroup:SecurityGroup": ("VPC", "name"),
    "aws:route53/zone:Zone": ("VPC", "name"),
}
OWN_VPC = {"etcd:bastion": "true", "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"])}
SHARED_VPC = {"etcd:bastion": "false", "etcd:vpcId": "vpc-0a1b2c3d4e5f60718", "etcd:privateSubnetIds": encode(
    ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719", "subnet-0c1d2e3f4a5b6071a"])}


def explicit_names(run: offline.OfflineRun) -> dict[str, set[str]]:
    """Per unique-name type, the names the program sets itself."""
    names: dict[str, set[str]] = {}
    for resource in run.resources:
        if resource.type in UNIQUE_NAMES:
            value = resource.inputs.get(UNIQUE_NAMES[resource.type][1])
            names.setdefault(resource.type, set()).update([value] if value else [])
    return names


@pytest.fixture(scope="module", params=[OWN_VPC, SHARED_VPC], ids=["own VPCs", "one existing VPC"])
def two_stacks(request, ssh_key):
    raw = {"aws:region": "eu-west-2", "etcd:clusterName": "etcd", "etcd:sshPublicKey": ssh_key, **request.param}
    return offline.run(raw, "dev"), offline.run(raw, "prod")


def test_no_name_aws_keeps_unique_is_set_alike_in_two_stacks(two_stacks):
    dev, prod = map(explicit_names, two_stacks)
    assert dev.keys() == prod.keys()
    for typ in dev:
        assert not dev[typ] & prod[typ], (typ, UNIQUE_NAMES[typ][0], dev[typ] & prod[typ])


def test_the_names_the_program_sets_carry_the_stack(two_stacks):
    for run, stack in zip(two_stacks, ("dev", "prod"), strict=True):
        names = explicit_names(run)
        assert names["aws:route53/zone:Zone"] == {f"etcd.{stack}.internal"}
        assert naming.ca_bundle_parameter(stack, "etcd") in names["aws:ssm/parameter:Parameter"]
        assert all(name.startswith(f"/etcd-aws/{stack}/etcd/") for name in names["aws:ssm/parameter:Parameter"])
        # Any other name the program sets holds the stack as a part of its own; the rest are auto-named.
        for typ, found in names.items():
            assert all(stack in re.split(r"[./:-]", name) for name in found), (typ, found)


def test_every_name_the_program_sets_puts_the_stack_before_the_cluster(two_stacks):
    for run, stack in zip(two_stacks, ("dev", "prod"), strict=True):
        for typ, found in explicit_names(run).items():
            for name in found:
                assert (name.startswith((f"/etcd-aws/{stack}/etcd/", f"alias/etcd-aws/{stack}/etcd", f"{stack}-etcd-"))
                        or name == f"etcd.{stack}.internal"), (typ, name)


def test_members_read_the_parameters_of_their_own_stack(two_stacks):
    from tests.conftest import user_data_of, written_file

    for run, stack in zip(two_stacks, ("dev", "prod"), strict=True):
        for instance in run.of_type("aws:ec2/instance:Instance"):
            member = instance.inputs["tags"].get("etcd-member")
            if member:
                script = written_file(user_data_of(instance), "/usr/local/sbin/etcd-bootstrap")
                path = naming.parameter_path(stack, "etcd", member)
                assert f"readonly KEY_PARAMETER={path}/key" in script
                assert f"readonly CA_PARAMETER={naming.ca_bundle_parameter(stack, 'etcd')}" in script

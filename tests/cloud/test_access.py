from __future__ import annotations

import json

import pytest

from etcd_stack.cloud.iam import SSM_AGENT_ACTIONS

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
INSTANCE = "aws:ec2/instance:Instance"
WORLD = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module")
def stack():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from etcd_stack.preview import offline
    from tests.conftest import encode, openssh_public

    raw = {
        "aws:region": "us-east-2",
        "etcd:vpcCidr": "10.30.0.0/16",
        "etcd:bastion": "true",
        "etcd:sshAllowedCidrs": encode(["198.51.100.7/32", "2001:db8:1::/48"]),
        "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate()),
    }
    return offline.run(raw, "test")


def group(run, name):
    return run.named(name, GROUP)


def ingress_of(run, security_group):
    return [r for r in run.of_type(INGRESS) if r.inputs["securityGroupId"] == security_group.id]


def test_ssh_reaches_the_bastion_only_from_the_listed_cidrs(stack):
    rules = ingress_of(stack, group(stack, "etcd-bastion"))
    assert {(r.inputs["fromPort"], r.inputs["toPort"], r.inputs["ipProtocol"]) for r in rules} == {(22, 22, "tcp")}
    sources = sorted(r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in rules)
    assert sources == ["198.51.100.7/32", "2001:db8:1::/48"]


def test_no_ingress_anywhere_is_open_to_the_world(stack):
    rules = stack.of_type(INGRESS)
    assert rules
    for rule in rules:
        assert rule.inputs.get("cidrIpv4") not in WORLD and rule.inputs.get("cidrIpv6") not in WORLD, rule.name
    for sg in stack.of_type(GROUP):
        assert not sg.inputs.get("ingress"), "rules are separate resources, never inline"


def test_member_ports_are_open_only_to_whom_they_serve(stack):
    members = group(stack, "etcd-access-members")
    bastion = group(stack, "etcd-bastion")
    by_port = {}
    for rule in ingress_of(stack, members):
        assert rule.inputs["ipProtocol"] == "tcp" and rule.inputs["fromPort"] == rule.inputs["toPort"]
        by_port.setdefault(rule.inputs["fromPort"], []).append(rule.inputs)
    balancer = group(stack, "etcd-access-load-balancer")
    assert sorted(by_port) == [22, 2379, 2380, 2381]
    assert sorted(r.get("cidrIpv4") or r["referencedSecurityGroupId"] for r in by_port[2379]) == sorted(
        ["10.30.0.0/16", balancer.id, members.id, bastion.id])
    assert [r.get("referencedSecurityGroupId") for r in by_port[2381]] == [balancer.id]
    assert "cidrIpv4" not in by_port[2381][0]
    assert [r.get("referencedSecurityGroupId") for r in by_port[2380]] == [members.id]
    assert [r.get("referencedSecurityGroupId") for r in by_port[22]] == [bastion.id]
    assert "cidrIpv4" not in by_port[2380][0] and "cidrIpv4" not in by_port[22][0]


def test_the_bastion_reaches_members_only_on_ssh_and_the_client_port(stack):
    bastion = group(stack, "etcd-bastion")
    rules = [r.inputs for r in stack.of_type(EGRESS) if r.inputs["securityGroupId"] == bastion.id]
    members = group(stack, "etcd-access-members")
    assert {(r["fromPort"], r.get("referencedSecurityGroupId") or r.get("cidrIpv4")) for r in rules} == {
        (22, members.id), (2379, "10.30.0.0/16"), (443, "0.0.0.0/0"),
    }


def test_the_bastion_requires_imdsv2_and_encrypts_its_disk(stack):
    bastion = stack.named("etcd-bastion", INSTANCE)
    assert bastion.inputs["metadataOptions"] == {
        "httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1,
    }
    assert bastion.inputs["rootBlockDevice"]["encrypted"] is True


def test_the_bastion_lives_in_a_public_subnet_with_its_own_address(stack):
    bastion = stack.named("etcd-bastion", INSTANCE)
    subnet = stack.by_id(bastion.inputs["subnetId"])
    assert subnet.inputs["tags"]["tier"] == "public"
    assert bastion.inputs["associatePublicIpAddress"] is True
    assert bastion.inputs["vpcSecurityGroupIds"] == [group(stack, "etcd-bastion").id]
    eip = stack.named("etcd-bastion", "aws:ec2/eip:Eip")
    assert eip.inputs["instance"] == bastion.id
    assert stack.outputs["bastionPublicIp"] == eip.state["publicIp"]
    assert stack.outputs["bastionSsh"] == f"ssh ec2-user@{eip.state['publicIp']}"


def test_the_bastion_key_pair_holds_the_configured_public_key(stack):
    key = stack.named("etcd-bastion", "aws:ec2/keyPair:KeyPair")
    assert key.inputs["publicKey"] == stack.config.ssh_public_key
    assert stack.named("etcd-bastion", INSTANCE).inputs["keyName"] == key.state["keyName"]


def test_the_bastion_runs_amazon_linux_2023_for_its_cpu_and_keeps_its_image(stack):
    from etcd_stack.preview.mocks import digest

    bastion = stack.named("etcd-bastion", INSTANCE)
    parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"  # t4g is Graviton
    assert bastion.inputs["ami"] == f"ami-{digest('ssm', 'us-east-2', parameter)[:17]}"
    assert bastion.ignore_changes == ("ami",)


def test_every_instance_role_registers_with_session_manager_through_our_own_policy(stack):
    roles = stack.of_type("aws:iam/role:Role")
    instance_roles = [r for r in roles if "ec2.amazonaws.com" in r.inputs["assumeRolePolicy"]]
    assert sorted(r.name for r in instance_roles) == ["etcd-access-0", "etcd-access-1", "etcd-access-2", "etcd-bastion"]
    assert stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == [], "no managed policy anywhere"
    for role in instance_roles:
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert trust["Statement"] == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}
        ]
        agent = json.loads(stack.named(f"{role.name}-ssm-agent", "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
        assert agent["Statement"] == [
            {"Sid": "SsmAgent", "Effect": "Allow", "Action": list(SSM_AGENT_ACTIONS), "Resource": "*"}
        ]
        assert not any(action.startswith("ssm:GetParameter") for action in SSM_AGENT_ACTIONS)
        profile = stack.named(role.name, "aws:iam/instanceProfile:InstanceProfile")
        assert profile.inputs["role"] == role.state["name"]
    assert stack.named("etcd-bastion", INSTANCE).inputs["iamInstanceProfile"] == (
        stack.named("etcd-bastion", "aws:iam/instanceProfile:InstanceProfile").state["name"]
    )


def test_one_member_role_per_member(run_stack):
    run = run_stack(clusterSize=5, bastion=False)
    names = sorted(r.name for r in run.of_type("aws:iam/role:Role") if r.name.startswith("etcd-access-"))
    assert names == [f"etcd-access-{i}" for i in range(5)]


def test_without_the_bastion_nothing_listens_for_ssh(run_stack):
    run = run_stack(bastion=False)
    assert not [r for r in run.resources if "bastion" in r.name]
    assert all(not i.inputs.get("associatePublicIpAddress") for i in run.of_type(INSTANCE))
    assert not run.of_type("aws:ec2/keyPair:KeyPair")
    assert 22 not in {r.inputs["fromPort"] for r in run.of_type(INGRESS)}
    assert run.outputs["bastionPublicIp"] is None and run.outputs["bastionSsh"] is None


def test_members_may_reach_out_through_nat(stack):
    members = group(stack, "etcd-access-members")
    (rule,) = [r.inputs for r in stack.of_type(EGRESS) if r.inputs["securityGroupId"] == members.id]
    assert rule["ipProtocol"] == "-1" and rule["cidrIpv4"] == "0.0.0.0/0"


def test_the_bastion_address_is_associated_only_once_the_internet_gateway_is_attached(stack):
    address = stack.named("etcd-bastion", "aws:ec2/eip:Eip")
    (gateway,) = stack.of_type("aws:ec2/internetGateway:InternetGateway")
    assert address.inputs["instance"] == stack.named("etcd-bastion", INSTANCE).id
    # The SDK registers the address only after the gateway's step is done (depends_on is awaited).
    assert ("aws:ec2/internetGateway:InternetGateway", gateway.name) in address.depends_on
def sources(run, security_group, port: int) -> set[str]:
    return {r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId")
            for r in ingress_of(run, security_group) if r.inputs["fromPort"] == port}


def test_the_load_balancer_has_its_own_group_and_reaches_members_only_on_its_two_ports(stack):
    balancer = group(stack, "etcd-access-load-balancer")
    members = group(stack, "etcd-access-members")
    nlb = stack.named("etcd-client", "aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["securityGroups"] == [balancer.id]
    assert sources(stack, balancer, 2379) == {"10.30.0.0/16", group(stack, "etcd-bastion").id}
    assert {r.inputs["fromPort"] for r in ingress_of(stack, balancer)} == {2379}
    egress = [r.inputs for r in stack.of_type(EGRESS) if r.inputs["securityGroupId"] == balancer.id]
    assert sorted((r["fromPort"], r["referencedSecurityGroupId"]) for r in egress) == [
        (2379, members.id), (2381, members.id)]


def test_listed_clients_replace_the_vpc_on_the_client_port_and_nothing_else_opens(run_stack):
    run = run_stack(bastion=False, clientCidrs=["10.1.0.0/16", "192.168.4.0/24"],
                    clientSecurityGroupIds=["sg-0123456789abcdef0"])
    members, balancer = group(run, "etcd-access-members"), group(run, "etcd-access-load-balancer")
    listed = {"10.1.0.0/16", "192.168.4.0/24", "sg-0123456789abcdef0"}
    assert sources(run, balancer, 2379) == listed
    assert sources(run, members, 2379) == listed | {balancer.id, members.id}
    assert sources(run, members, 2381) == {balancer.id}
    assert "10.0.0.0/16" not in {r.inputs.get("cidrIpv4") for r in run.of_type(INGRESS)}


def test_only_groups_listed_means_no_cidr_at_all(run_stack):
    run = run_stack(bastion=False, clientSecurityGroupIds=["sg-0123456789abcdef0"])
    assert not [r for r in run.of_type(INGRESS) if r.inputs.get("cidrIpv4")]


def test_the_discovery_url_output_is_a_secret(run_stack):
    run = run_stack(bastion=False)
    assert "discoveryUrl" in run.secret_outputs and run.outputs["discoveryUrl"].startswith("https://")

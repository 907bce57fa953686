"""Who may reach what: the members' security group and roles, and the optional SSH bastion."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.iam import instance_role
from etcd_stack.config import IPNetwork, architecture
from etcd_stack.tags import ROLE_TAG, tagged

CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381
SSH_PORT = 22
HTTPS_PORT = 443


def al2023_ami(instance_type: str) -> str:
    """The current Amazon Linux 2023 image for the instance type's CPU, from AWS's public parameter."""
    arch = architecture(instance_type)
    return aws.ssm.get_parameter(name=f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}").value


def _ingress(name: str, group: aws.ec2.SecurityGroup, port: int, description: str,
             source: IPNetwork | pulumi.Output[str], tags: Mapping[str, str], parent: pulumi.Resource) -> None:
    """One ingress rule on one TCP port, from a CIDR or from another security group."""
    sources: dict[str, pulumi.Input[str]]
    if isinstance(source, ipaddress.IPv4Network):
        sources = {"cidr_ipv4": str(source)}
    elif isinstance(source, ipaddress.IPv6Network):
        sources = {"cidr_ipv6": str(source)}
    else:
        sources = {"referenced_security_group_id": source}
    aws.vpc.SecurityGroupIngressRule(
        name,
        security_group_id=group.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=description,
        tags=tagged(tags, name),
        opts=pulumi.ResourceOptions(parent=parent),
        **sources,
    )


def _egress(name: str, group: aws.ec2.SecurityGroup, description: str, tags: Mapping[str, str],
            parent: pulumi.Resource, port: int | None = None, **destination: pulumi.Input[str]) -> None:
    """One egress rule: all traffic when no port is given, else that TCP port."""
    ports: dict[str, object] = {"ip_protocol": "-1"} if port is None else {
        "ip_protocol": "tcp", "from_port": port, "to_port": port}
    aws.vpc.SecurityGroupEgressRule(
        name,
        security_group_id=group.id,
        description=description,
        tags=tagged(tags, name),
        opts=pulumi.ResourceOptions(parent=parent),
        **ports,
        **destination,
    )


def _security_group(name: str, vpc_id: pulumi.Input[str], description: str, tags: Mapping[str, str],
                    parent: pulumi.Resource) -> aws.ec2.SecurityGroup:
    # Rules are separate resources: inline rules would fight them on every update.
    return aws.ec2.SecurityGroup(
        name, vpc_id=vpc_id, description=description, tags=tagged(tags, name),
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class MemberAccessArgs:
    cluster_size: int
    vpc_id: pulumi.Input[str]
    vpc_cidr: ipaddress.IPv4Network
    tags: Mapping[str, str]
    # Who may be an etcd client on 2379, beside the members themselves (StackConfig.client_sources: the VPC
    # when nothing is listed).
    client_cidrs: Sequence[IPNetwork]
    client_security_group_ids: Sequence[str]


def _client_sources(name: str, group: aws.ec2.SecurityGroup, args: MemberAccessArgs,
                    parent: pulumi.Resource) -> None:
    """2379 on the group from every listed client CIDR and client security group."""
    for index, cidr in enumerate(args.client_cidrs):
        # The first keeps the name the VPC-wide rule always had, so a stack that lists nothing keeps its rule.
        _ingress(f"{name}-client" + (f"-{index}" if index else ""), group, CLIENT_PORT, f"etcd clients in {cidr}",
                 cidr, args.tags, parent)
    for index, client_group in enumerate(args.client_security_group_ids):
        _ingress(f"{name}-client-sg-{index}", group, CLIENT_PORT, f"etcd clients in {client_group}",
                 pulumi.Output.from_input(client_group), args.tags, parent)


class MemberAccess(pulumi.ComponentResource):
    """The members' and the load balancer's security groups, and one instance role per member."""

    security_group: aws.ec2.SecurityGroup
    load_balancer_security_group: aws.ec2.SecurityGroup
    roles: list[aws.iam.Role]
    instance_profiles: list[aws.iam.InstanceProfile]

    def __init__(self, name: str, args: MemberAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:access:MemberAccess", name, None, opts)
        group_name = f"{name}-members"
        self.security_group = _security_group(group_name, args.vpc_id, "etcd members", args.tags, self)
        group = self.security_group
        # An NLB takes security groups only when it is created: this one exists before the balancer does.
        balancer_name = f"{name}-load-balancer"
        balancer = _security_group(balancer_name, args.vpc_id, "etcd client load balancer", args.tags, self)
        self.load_balancer_security_group = balancer
        _client_sources(group_name, group, args, self)
        _client_sources(balancer_name, balancer, args, self)
        _ingress(f"{group_name}-client-balancer", group, CLIENT_PORT, "etcd clients through the load balancer",
                 balancer.id, args.tags, self)
        # etcd-join asks the other members, on their client port, to add it.
        _ingress(f"{group_name}-client-members", group, CLIENT_PORT, "etcd clients: the members themselves",
                 group.id, args.tags, self)
        _ingress(f"{group_name}-peer", group, PEER_PORT, "etcd peers: members only",
                 group.id, args.tags, self)
        _ingress(f"{group_name}-health", group, METRICS_PORT, "health checks from the load balancer",
                 balancer.id, args.tags, self)
        # Health checks obey the balancer's outbound rules only (ELB guide, NLB security groups).
        for port, what in ((CLIENT_PORT, "etcd clients"), (METRICS_PORT, "health checks")):
            _egress(f"{balancer_name}-to-members-{port}", balancer, f"{what} to the members", args.tags, self,
                    port=port, referenced_security_group_id=group.id)
        # Egress through NAT: the etcd download, SSM, and the AWS APIs.
        _egress(f"{group_name}-egress", group, "all outbound", args.tags, self, cidr_ipv4="0.0.0.0/0")

        self.roles, self.instance_profiles = [], []
        for index in range(args.cluster_size):
            role, profile = instance_role(f"{name}-{index}", args.tags, self)
            self.roles.append(role)
            self.instance_profiles.append(profile)

        self.security_group_id = group.id
        self.register_outputs({"security_group_id": self.security_group_id,
                               "load_balancer_security_group_id": balancer.id})


@dataclass(frozen=True)
class BastionArgs:
    instance_type: str
    subnet_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: ipaddress.IPv4Network
    allowed_cidrs: Sequence[IPNetwork]
    ssh_public_key: str
    member_security_group: aws.ec2.SecurityGroup
    tags: Mapping[str, str]
    # Its Elastic IP can be associated only once the VPC's internet gateway is attached.
    internet_gateway: pulumi.Resource
    # Its role's inline policy denying every read of the cluster's parameters (pki.no_read_policy).
    parameter_policy: str
    # etcdctl from the bastion reaches the members and the balancer whoever else the clients are.
    load_balancer_security_group: aws.ec2.SecurityGroup


class Bastion(pulumi.ComponentResource):
    """An SSH jump host in a public subnet, reachable only from the listed CIDRs."""

    instance: aws.ec2.Instance
    security_group: aws.ec2.SecurityGroup
    public_ip: pulumi.Output[str]

    def __init__(self, name: str, args: BastionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:access:Bastion", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags
        group = _security_group(name, args.vpc_id, "SSH bastion", tags, self)
        for index, cidr in enumerate(args.allowed_cidrs):
            _ingress(f"{name}-ssh-{index}", group, SSH_PORT, f"SSH from {cidr}", cidr, tags, self)
        _egress(f"{name}-to-members-ssh", group, "SSH to the members", tags, self, port=SSH_PORT,
                referenced_security_group_id=args.member_security_group.id)
        _egress(f"{name}-to-etcd", group, "etcdctl to the cluster", tags, self, port=CLIENT_PORT,
                cidr_ipv4=str(args.vpc_cidr))
        _egress(f"{name}-https", group, "HTTPS: SSM and package updates", tags, self, port=HTTPS_PORT,
                cidr_ipv4="0.0.0.0/0")
        # The members' side of the jump: port 22 from this group only.
        _ingress(f"{name}-ssh-to-members", args.member_security_group, SSH_PORT, "SSH from the bastion",
                 group.id, tags, self)
        _ingress(f"{name}-etcd-to-members", args.member_security_group, CLIENT_PORT, "etcdctl from the bastion",
                 group.id, tags, self)
        _ingress(f"{name}-etcd-to-balancer", args.load_balancer_security_group, CLIENT_PORT,
                 "etcdctl from the bastion", group.id, tags, self)

        key = aws.ec2.KeyPair(name, public_key=args.ssh_public_key, tags=tagged(tags, name), opts=child)
        role, profile = instance_role(name, tags, self)
        aws.iam.RolePolicy(f"{name}-no-tls", role=role.id, policy=args.parameter_policy, opts=child)
        self.instance = aws.ec2.Instance(
            name,
            ami=al2023_ami(args.instance_type),
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[group.id],
            key_name=key.key_name,
            iam_instance_profile=profile.name,
            associate_public_ip_address=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3"},
            tags={**tagged(tags, name), ROLE_TAG: "bastion"},
            # The image is resolved once; a newer AL2023 release must not replace the host by itself.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]),
        )
        address = aws.ec2.Eip(
            name, domain="vpc", instance=self.instance.id, tags=tagged(tags, name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.internet_gateway]),
        )
        self.security_group = group
        self.public_ip = address.public_ip
        self.register_outputs({"public_ip": self.public_ip})

"""etcd on AWS: load the config, build the components, export what operators need."""

import pulumi

from etcd_stack import config
from etcd_stack.access import Bastion, BastionArgs, MemberAccess, MemberAccessArgs
from etcd_stack.network import Network, NetworkArgs, availability_zones

cfg = config.load(config.raw_from_pulumi(), pulumi.get_stack())
tags = cfg.common_tags

network = Network(
    cfg.cluster_name,
    NetworkArgs(
        cidr=cfg.vpc_cidr,
        availability_zones=availability_zones(cfg.region),
        nat_strategy=cfg.nat_strategy,
        flow_log_retention_days=cfg.flow_log_retention_days,
        tags=tags,
    ),
)

access = MemberAccess(
    f"{cfg.cluster_name}-etcd",
    MemberAccessArgs(cluster_size=cfg.cluster_size, vpc_id=network.vpc_id, vpc_cidr=cfg.vpc_cidr, tags=tags),
)

bastion = None
if cfg.bastion:
    bastion = Bastion(
        f"{cfg.cluster_name}-bastion",
        BastionArgs(
            instance_type=cfg.bastion_instance_type,
            subnet_id=network.public_subnet_ids[0],
            vpc_id=network.vpc_id,
            vpc_cidr=cfg.vpc_cidr,
            allowed_cidrs=cfg.ssh_allowed_cidrs,
            ssh_public_key=cfg.ssh_public_key,
            member_security_group=access.security_group,
            tags=tags,
        ),
    )

pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("natGatewayPublicIps", [nat.public_ip for nat in network.nat_gateways])
pulumi.export("memberSecurityGroupId", access.security_group_id)
pulumi.export("bastionPublicIp", bastion.public_ip if bastion else None)
pulumi.export("bastionSsh", bastion.public_ip.apply(lambda ip: f"ssh ec2-user@{ip}") if bastion else None)

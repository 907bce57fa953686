"""Tags every AWS resource carries: the stack's common tags and its own Name."""

from collections.abc import Mapping


def tagged(common: Mapping[str, str], name: str) -> dict[str, str]:
    return {**common, "Name": name}


# Says what an instance is for; the policy pack allows a public address only on the bastion.
ROLE_TAG = "etcd-role"

# What the stack's members carry (config.common_tags and cloud/members.py); ops finds a stack's members by them.
CLUSTER_TAG = "etcd-cluster"
STACK_TAG = "pulumi-stack"
MEMBER_TAG = "etcd-member"

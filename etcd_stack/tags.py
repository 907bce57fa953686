"""Tags every AWS resource carries: the stack's common tags and its own Name."""

from collections.abc import Mapping


def tagged(common: Mapping[str, str], name: str) -> dict[str, str]:
    return {**common, "Name": name}


# Says what an instance is for; the policy pack allows a public address only on the bastion.
ROLE_TAG = "etcd-role"

"""Names AWS requires unique per account and region (or per VPC) carry the stack, so two stacks with the
same etcd:clusterName live side by side. Everything else is auto-named by Pulumi with a random suffix."""

# The first segment keeps the stack's parameters apart from anything else in the account, and off the
# `aws`/`ssm` prefixes SSM refuses.
PARAMETER_ROOT = "etcd-aws"


def parameter_name(stack: str, cluster_name: str, *parts: str) -> str:
    """An SSM parameter name of this stack's cluster: /etcd-aws/<stack>/<cluster>/<parts...>."""
    return "/" + "/".join((PARAMETER_ROOT, stack, cluster_name, *parts))


def parameter_path(stack: str, cluster_name: str, member_name: str) -> str:
    """Where a member's key and certificate live (`<path>/key`, `<path>/cert`)."""
    return parameter_name(stack, cluster_name, member_name, "tls")


def ca_bundle_parameter(stack: str, cluster_name: str) -> str:
    return parameter_name(stack, cluster_name, "tls", "ca-bundle")


def domain(stack: str, cluster_name: str) -> str:
    """The private DNS zone: a VPC takes one zone of a name, so a second stack in it needs its own."""
    return f"{cluster_name}.{stack}.internal"


def key_alias(stack: str, cluster_name: str) -> str:
    """The stack's KMS key alias: alias names are unique per account and region."""
    return "/".join(("alias", PARAMETER_ROOT, stack, cluster_name))

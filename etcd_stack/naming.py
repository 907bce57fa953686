"""Names AWS requires unique per account and region (or per VPC) carry the stack, so two stacks with the
same etcd:clusterName live side by side. Everything else is auto-named by Pulumi with a random suffix.
Every name puts the stack before the cluster: paths are /etcd-aws/<stack>/<cluster>/..., flat names
<stack>-<cluster>-<suffix>."""

import hashlib
import re

# The first segment keeps the stack's parameters apart from anything else in the account, and off the
# `aws`/`ssm` prefixes SSM refuses.
PARAMETER_ROOT = "etcd-aws"


def parameter_name(stack: str, cluster_name: str, *parts: str) -> str:
    """An SSM parameter or CloudWatch log group name of this stack's cluster: /etcd-aws/<stack>/<cluster>/<parts>."""
    return "/" + metric_namespace(stack, cluster_name, *parts)


def metric_namespace(stack: str, cluster_name: str, *parts: str) -> str:
    """The CloudWatch namespace the members publish to: the member roles may put data only here
    (cloudwatch:namespace), so no stack can feed another's alarms. Pulumi stack names (letters, digits,
    `-_.`) are all characters CloudWatch allows in a namespace."""
    return "/".join((PARAMETER_ROOT, stack, cluster_name, *parts))


def scoped_name(stack: str, cluster_name: str, suffix: str, limit: int = 255, separator: str = "-") -> str:
    """A flat name unique per stack and cluster within AWS's `limit` (alarms, dashboards, rules); a stack
    name with characters the name may not hold, or one too long, is shortened to a digest so that two
    stacks never share the name."""
    digest = hashlib.sha256(stack.encode()).hexdigest()
    safe_stack = re.sub(r"[^A-Za-z0-9_-]", "_", stack)
    # `dev.v2` and `dev_v2` are two stacks: a rewritten name keeps a digest of the original.
    if safe_stack != stack:
        safe_stack = f"{safe_stack}-{digest[:6]}"
    name = separator.join((safe_stack, cluster_name, suffix))
    if len(name) <= limit:
        return name
    return separator.join((digest[:12], cluster_name, suffix))[:limit]


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

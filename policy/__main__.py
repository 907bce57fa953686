"""etcd-aws's policy pack: `pulumi preview --policy-pack policy`."""

from pack import policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="etcd-aws",
    description="AWS Foundational Security Best Practices and CIS etcd controls for the etcd-aws stack",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(),
)

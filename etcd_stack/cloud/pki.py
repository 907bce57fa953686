"""The cluster's PKI with pulumi-tls: one CA, a certificate per member, an operator client certificate.

Certificates are issued to names and addresses known before any instance exists. Each member's key
and certificate go to SSM Parameter Store as SecureStrings under the member's own path; user_data
carries only the CA certificate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from etcd_stack import naming
from etcd_stack.addressing import MemberPlan
from etcd_stack.cloud import iam
from etcd_stack.config import CaRotation
from etcd_stack.member import certificates
from etcd_stack.member.certificates import CertProfile
from etcd_stack.tags import tagged


@dataclass(frozen=True)
class PkiArgs:
    cluster_name: str
    members: Sequence[MemberPlan]
    client_endpoint: str
    tags: Mapping[str, str]
    stack: str
    region: str
    account: str
    # The stack's KMS key (StackKey): every parameter is a SecureString under it.
    key_arn: pulumi.Input[str]
    ca_generation: int = 1
    ca_rotation: CaRotation = CaRotation.NONE
    key_generation: int = 1
    # The shared operator key lives in the stack's state; without it, people use their own (cloud/operators.py).
    operator_key: bool = True


@dataclass(frozen=True)
class IssuedCert:
    private_key_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]


@dataclass(frozen=True)
class MemberSecrets:
    """Where a member finds its key, its certificate and the CAs it trusts, and the parameters that hold them."""

    path: str
    key: aws.ssm.Parameter
    cert: aws.ssm.Parameter
    ca_bundle: aws.ssm.Parameter
    # The member role's inline policy: its own parameters, and explicit denies on every other member's.
    read_policy: str


@dataclass(frozen=True)
class Authority:
    key: tls.PrivateKey
    cert_pem: pulumi.Output[str]


def parameter_root(stack: str, cluster_name: str) -> str:
    """The path every parameter of the stack's cluster lives under."""
    return naming.parameter_name(stack, cluster_name)


def member_parameters(stack: str, cluster_name: str, member_name: str) -> tuple[str, str, str]:
    """The parameters member `member_name` reads: its key, its certificate, and the CA bundle."""
    path = naming.parameter_path(stack, cluster_name, member_name)
    return f"{path}/key", f"{path}/cert", naming.ca_bundle_parameter(stack, cluster_name)


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' -> ['/', '/a', '/a/b', '/a/b/c']: every path whose recursive listing reaches `path`."""
    parts = path.strip("/").split("/")
    return ["/", *("/" + "/".join(parts[:end]) for end in range(1, len(parts) + 1))]


def _never_read(arn: Callable[[str], str], trees: Sequence[str]) -> list[dict[str, object]]:
    """Explicit denies of every way to read a parameter under any of `trees`: by name, by version, by path."""
    listed = sorted({path for tree in trees for path in _ancestors(tree)})
    return [
        {"Sid": "NeverReadThese", "Effect": "Deny", "Action": list(iam.PARAMETER_READS),
         "Resource": sorted(arn(f"{tree}/*") for tree in trees)},
        {"Sid": "NeverListThese", "Effect": "Deny", "Action": iam.PATH_READ,
         "Resource": sorted({*map(arn, listed), *(arn(f"{tree}/*") for tree in trees)})},
    ]


def member_read_policy(region: str, account: str, stack: str, cluster_name: str, member_names: Sequence[str],
                       index: int) -> str:
    """Member `index` reads its own parameters, and is explicitly denied every way to another member's.

    The deny holds even if someone attaches a broader policy (such as AmazonSSMManagedInstanceCore) later.
    """
    def arn(name: str) -> str:
        return iam.parameter_arn(region, account, name)

    own = member_parameters(stack, cluster_name, member_names[index])
    others = [naming.parameter_path(stack, cluster_name, name) for i, name in enumerate(member_names) if i != index]
    return iam.policy(
        {"Sid": "ReadOwnTls", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": sorted(map(arn, own))},
        *_never_read(arn, others),
    )


def no_read_policy(region: str, account: str, stack: str, cluster_name: str) -> str:
    """For an instance that reads none of the cluster's parameters (the bastion), whatever else it is given."""
    return iam.policy(*_never_read(lambda name: iam.parameter_arn(region, account, name),
                                   [parameter_root(stack, cluster_name)]))


def _key(name: str, parent: pulumi.Resource) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))


class ClusterPki(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    members: list[IssuedCert]
    member_secrets: list[MemberSecrets]
    operator: IssuedCert | None

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:pki:ClusterPki", name, None, opts)
        self._name, self._tags, self._args = name, args.tags, args
        current = self._authority(args.cluster_name, args.ca_generation)
        previous = None
        if args.ca_rotation is not CaRotation.NONE:
            previous = self._authority(args.cluster_name, args.ca_generation - 1)
        self._issuer = previous if args.ca_rotation is CaRotation.TRUST_NEW else current
        trusted = [current, previous] if previous else [current]
        # What every member and client trusts: during a CA move, both CAs.
        self.ca_cert_pem = pulumi.Output.all(*[ca.cert_pem for ca in trusted]).apply("".join)
        self.members = [
            self._issue(f"{name}-{m.name}", certificates.member_profile(m.name, m.dns_name, m.ip, args.client_endpoint))
            for m in args.members
        ]
        self.operator = (self._issue(f"{name}-operator", certificates.operator_profile(args.cluster_name))
                         if args.operator_key else None)
        # Whoever can write the bundle decides whom members trust: it is kept like a key.
        bundle = self._parameter(f"{name}-ca-bundle", naming.ca_bundle_parameter(args.stack, args.cluster_name),
                                 self.ca_cert_pem, "etcd cluster CA certificates (PEM) the members trust")
        names = [m.name for m in args.members]
        self.member_secrets = [
            self._store(f"{name}-{m.name}", m.name, issued, bundle,
                        member_read_policy(args.region, args.account, args.stack, args.cluster_name, names, index))
            for index, (m, issued) in enumerate(zip(args.members, self.members, strict=True))
        ]
        self.register_outputs({"ca_cert_pem": self.ca_cert_pem})

    def _authority(self, cluster_name: str, generation: int) -> Authority:
        # The first CA keeps the name it always had; later ones carry their generation.
        name = f"{self._name}-ca" if generation == 1 else f"{self._name}-ca-{generation}"
        key = _key(name, self)
        cert = tls.SelfSignedCert(
            name,
            private_key_pem=key.private_key_pem,
            subject={"common_name": certificates.ca_common_name(cluster_name, generation),
                     "organization": certificates.ORGANIZATION},
            is_ca_certificate=True,
            validity_period_hours=certificates.CA_VALIDITY_HOURS,
            allowed_uses=list(certificates.CA_USES),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return Authority(key, cert.cert_pem)

    def _issue(self, name: str, profile: CertProfile) -> IssuedCert:
        child = pulumi.ResourceOptions(parent=self)
        generation = self._args.key_generation
        # A new generation is a new resource, so a new private key; the first keeps the name it always had.
        key = _key(name if generation == 1 else f"{name}-k{generation}", self)
        request = tls.CertRequest(
            name,
            private_key_pem=key.private_key_pem,
            subject={"common_name": profile.common_name, "organization": certificates.ORGANIZATION},
            dns_names=list(profile.dns_names),
            ip_addresses=list(profile.ip_addresses),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            name,
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._issuer.key.private_key_pem,
            ca_cert_pem=self._issuer.cert_pem,
            validity_period_hours=certificates.LEAF_VALIDITY_HOURS,
            early_renewal_hours=certificates.EARLY_RENEWAL_HOURS,
            allowed_uses=list(profile.uses),
            opts=child,
        )
        return IssuedCert(private_key_pem=pulumi.Output.secret(key.private_key_pem), cert_pem=cert.cert_pem)

    def _parameter(self, name: str, path: str, value: pulumi.Input[str], what: str,
                   opts: pulumi.ResourceOptions | None = None) -> aws.ssm.Parameter:
        return aws.ssm.Parameter(
            name,
            name=path,
            type="SecureString",
            key_id=self._args.key_arn,
            value=value,
            description=what,
            tags=tagged(self._tags, name),
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )

    def _store(self, name: str, member_name: str, issued: IssuedCert, bundle: aws.ssm.Parameter,
               read_policy: str) -> MemberSecrets:
        key_name, cert_name, _ = member_parameters(self._args.stack, self._args.cluster_name, member_name)
        # SSM keeps a parameter's earlier versions, values included, and GetParameter reads them by version
        # (name:N); deleting the parameter deletes its history. A new key (or a new KMS key under it) therefore
        # replaces the parameter, deleting the old one first (same name: the scripts and the key policy keep it).
        fresh = pulumi.ResourceOptions(replace_on_changes=["value", "keyId"], delete_before_replace=True)
        return MemberSecrets(
            path=naming.parameter_path(self._args.stack, self._args.cluster_name, member_name),
            key=self._parameter(f"{name}-key", key_name, issued.private_key_pem, "etcd member private key (PEM)",
                                fresh),
            cert=self._parameter(f"{name}-cert", cert_name, issued.cert_pem, "etcd member certificate (PEM)"),
            ca_bundle=bundle,
            read_policy=read_policy,
        )

    @property
    def issuer(self) -> Authority:
        """The CA that signs new certificates now (during a CA move, the one the stage names)."""
        return self._issuer

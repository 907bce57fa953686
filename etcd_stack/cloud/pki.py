"""The cluster's PKI with pulumi-tls: one CA, a certificate per member, an operator client certificate.

Certificates are issued to names and addresses known before any instance exists. Each member's key
and certificate go to SSM Parameter Store as SecureStrings under the member's own path; user_data
carries only the CA certificate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from etcd_stack.addressing import MemberPlan
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
    ca_generation: int = 1
    ca_rotation: CaRotation = CaRotation.NONE


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


@dataclass(frozen=True)
class Authority:
    key: tls.PrivateKey
    cert_pem: pulumi.Output[str]


def parameter_path(cluster_name: str, member_name: str) -> str:
    return f"/{cluster_name}/{member_name}/tls"


def ca_bundle_parameter(cluster_name: str) -> str:
    return f"/{cluster_name}/tls/ca-bundle"


def _key(name: str, parent: pulumi.Resource) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))


class ClusterPki(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    members: list[IssuedCert]
    member_secrets: list[MemberSecrets]
    operator: IssuedCert

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:pki:ClusterPki", name, None, opts)
        self._name, self._tags = name, args.tags
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
        self.operator = self._issue(f"{name}-operator", certificates.operator_profile(args.cluster_name))
        bundle = aws.ssm.Parameter(
            f"{name}-ca-bundle",
            name=ca_bundle_parameter(args.cluster_name),
            type="String",
            value=self.ca_cert_pem,
            description="etcd cluster CA certificates (PEM) the members trust",
            tags=tagged(self._tags, f"{name}-ca-bundle"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.member_secrets = [
            self._store(f"{name}-{m.name}", parameter_path(args.cluster_name, m.name), issued, bundle)
            for m, issued in zip(args.members, self.members, strict=True)
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
        key = _key(name, self)
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

    def _store(self, name: str, path: str, issued: IssuedCert, bundle: aws.ssm.Parameter) -> MemberSecrets:
        child = pulumi.ResourceOptions(parent=self)

        def parameter(suffix: str, value: pulumi.Input[str], what: str) -> aws.ssm.Parameter:
            return aws.ssm.Parameter(
                f"{name}-{suffix}",
                name=f"{path}/{suffix}",
                type="SecureString",
                value=value,
                description=what,
                tags=tagged(self._tags, f"{name}-{suffix}"),
                opts=child,
            )

        return MemberSecrets(
            path=path,
            key=parameter("key", issued.private_key_pem, "etcd member private key (PEM)"),
            cert=parameter("cert", issued.cert_pem, "etcd member certificate (PEM)"),
            ca_bundle=bundle,
        )

    @property
    def issuer(self) -> Authority:
        """The CA that signs new certificates now (during a CA move, the one the stage names)."""
        return self._issuer

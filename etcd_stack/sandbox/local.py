"""The stack's members on this machine: loopback addresses, paths under one directory, real certificates.

Everything is planned with the cloud path's own pieces (member plans, certificate profiles,
renderers); only addresses and paths differ. Member N listens on 127.0.N+1.10, so every member
keeps the standard ports.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from etcd_stack import config
from etcd_stack.addressing import MemberPlan, member_name
from etcd_stack.member import certificates
from etcd_stack.member.rendering import Paths

CLUSTER_NAME = "sandbox"


def local_members(size: int) -> tuple[MemberPlan, ...]:
    members = []
    for index in range(size):
        ip = f"127.0.{index + 1}.10"
        members.append(MemberPlan(index, member_name(index), ip, ip, "local", 0))
    return tuple(members)


def local_paths(base: Path, member: MemberPlan) -> Paths:
    home = base / "members" / member.name
    return Paths(
        config_file=str(home / "etcd.yaml"),
        join_config_file=str(home / "etcd-join.yaml"),
        pki_dir=str(home / "pki"),
        data_mount=str(home),
        data_dir=str(home / "data"),
        bin_dir=str(base / "bin"),
        sbin_dir=str(home),
        unit_dir=str(home),
        backup_state_dir=str(home / "backup-state"),
        backup_staging_dir=str(home / "backup-staging"),
        metrics_state_dir=str(home / "metrics-state"),
        fstab=str(home / "fstab"),
        devices=str(home / "dev"),
    )


@dataclass(frozen=True)
class ClientFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class LocalCa:
    """The CA that issues the local cluster's certificates, kept beside them so they can be re-issued."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    generation: int

    @classmethod
    def create(cls, cluster_name: str, generation: int = 1) -> LocalCa:
        key = certificates.new_private_key()
        cert = certificates.self_signed_ca(key, certificates.ca_common_name(cluster_name, generation), _not_before())
        return cls(key, cert, generation)

    @classmethod
    def load(cls, base: Path) -> LocalCa:
        pki = base / "pki"
        key = serialization.load_pem_private_key((pki / "issuer.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((pki / "issuer.crt").read_bytes())
        return cls(key, cert, int((pki / "issuer.generation").read_text()))

    def save(self, base: Path) -> None:
        _write(base / "pki" / "issuer.key", certificates.key_pem(self.key), mode=0o600)
        _write(base / "pki" / "issuer.crt", certificates.cert_pem(self.cert))
        _write(base / "pki" / "issuer.generation", f"{self.generation}\n")

    @property
    def pem(self) -> str:
        return certificates.cert_pem(self.cert)


def _not_before() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


def client_files(base: Path) -> ClientFiles:
    return ClientFiles(base / "pki" / "ca.crt", base / "pki" / "operator.crt", base / "pki" / "operator.key")


def _member_pems(member: MemberPlan, ca: LocalCa, client_endpoint: str) -> tuple[str, str]:
    """A new key and a certificate for it: (certificate PEM, key PEM)."""
    key = certificates.new_private_key()
    profile = certificates.member_profile(member.name, member.dns_name, member.ip, client_endpoint)
    cert = certificates.issue(profile, key, ca.key, ca.cert, _not_before())
    return certificates.cert_pem(cert), certificates.key_pem(key)


def issue_member(base: Path, member: MemberPlan, ca: LocalCa, client_endpoint: str = "localhost") -> None:
    """A new key and certificate for the member, where its Paths expect them."""
    paths = local_paths(base, member)
    cert, key = _member_pems(member, ca, client_endpoint)
    _write(Path(paths.cert_file), cert)
    _write(Path(paths.key_file), key, mode=0o600)


# --- the parameter store's stand-in: one file per parameter, named as on AWS (cloud/pki.py) ----------

def parameter_names(cluster_name: str, member_name: str) -> dict[str, str]:
    """The names etcd-bootstrap fetches the member's key, certificate and trusted CAs from."""
    return {"key_parameter": f"/{cluster_name}/{member_name}/tls/key",
            "cert_parameter": f"/{cluster_name}/{member_name}/tls/cert",
            "ca_parameter": ca_parameter(cluster_name)}


def ca_parameter(cluster_name: str) -> str:
    return f"/{cluster_name}/tls/ca-bundle"


def parameter_file(base: Path, name: str) -> Path:
    return base / "parameters" / name.lstrip("/")


def publish_pki(base: Path, members: tuple[MemberPlan, ...], cluster_name: str) -> None:
    """Stores what each member holds as its parameters, as `pulumi up` does: refresh-tls then changes nothing."""
    for member in members:
        paths, names = local_paths(base, member), parameter_names(cluster_name, member.name)
        for parameter, path in (("key_parameter", paths.key_file), ("cert_parameter", paths.cert_file),
                                ("ca_parameter", paths.ca_file)):
            _write(parameter_file(base, names[parameter]), Path(path).read_text(), mode=0o600)


def store_member(base: Path, cluster_name: str, member: MemberPlan, ca: LocalCa,
                 client_endpoint: str = "localhost") -> None:
    """A rotation as `pulumi up` makes it: a new key and certificate in the member's parameters only."""
    names = parameter_names(cluster_name, member.name)
    cert, key = _member_pems(member, ca, client_endpoint)
    _write(parameter_file(base, names["cert_parameter"]), cert, mode=0o600)
    _write(parameter_file(base, names["key_parameter"]), key, mode=0o600)


def store_trust(base: Path, cluster_name: str, pem_bundle: str) -> None:
    """The CAs every member is to trust, in the cluster's CA bundle parameter."""
    _write(parameter_file(base, ca_parameter(cluster_name)), pem_bundle, mode=0o600)


def issue_operator(base: Path, ca: LocalCa, cluster_name: str = CLUSTER_NAME) -> ClientFiles:
    client = client_files(base)
    key = certificates.new_private_key()
    cert = certificates.issue(certificates.operator_profile(cluster_name), key, ca.key, ca.cert, _not_before())
    _write(client.cert, certificates.cert_pem(cert))
    _write(client.key, certificates.key_pem(key), mode=0o600)
    return client


def sign_person(base: Path, request_pem: str) -> str:
    """What the stack does with a request in etcd:operatorCsrs, by the sandbox's CA: the same checks, then a
    client certificate for the request's own key."""
    try:
        request = x509.load_pem_x509_csr(request_pem.encode())
    except ValueError:
        raise config.ConfigError("--csr", request_pem, "a PEM request from `etcd-stack operator-csr`") from None
    names = request.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    config.check_operator_csr("--csr", str(names[0].value) if names else "", request_pem)
    ca = LocalCa.load(base)
    return certificates.cert_pem(certificates.sign(request, ca.key, ca.cert, certificates.CLIENT_USES, _not_before()))


def trust(base: Path, pem_bundle: str, member: MemberPlan | None = None) -> None:
    """The CAs a member (or, without one, the operator's client) trusts."""
    _write(Path(local_paths(base, member).ca_file) if member else client_files(base).ca, pem_bundle)


def write_pki(base: Path, members: tuple[MemberPlan, ...], client_endpoint: str = "localhost",
              cluster_name: str = CLUSTER_NAME) -> ClientFiles:
    """A fresh CA, each member's key and certificate where its Paths expect them, and the operator's."""
    ca = LocalCa.create(cluster_name)
    ca.save(base)
    for member in members:
        issue_member(base, member, ca, client_endpoint)
        trust(base, ca.pem, member)
    trust(base, ca.pem)
    return issue_operator(base, ca, cluster_name)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)

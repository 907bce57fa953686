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


def issue_member(base: Path, member: MemberPlan, ca: LocalCa, client_endpoint: str = "localhost") -> None:
    """A new key and certificate for the member, where its Paths expect them."""
    paths = local_paths(base, member)
    key = certificates.new_private_key()
    profile = certificates.member_profile(member.name, member.dns_name, member.ip, client_endpoint)
    cert = certificates.issue(profile, key, ca.key, ca.cert, _not_before())
    _write(Path(paths.cert_file), certificates.cert_pem(cert))
    _write(Path(paths.key_file), certificates.key_pem(key), mode=0o600)


def issue_operator(base: Path, ca: LocalCa, cluster_name: str = CLUSTER_NAME) -> ClientFiles:
    client = client_files(base)
    key = certificates.new_private_key()
    cert = certificates.issue(certificates.operator_profile(cluster_name), key, ca.key, ca.cert, _not_before())
    _write(client.cert, certificates.cert_pem(cert))
    _write(client.key, certificates.key_pem(key), mode=0o600)
    return client


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

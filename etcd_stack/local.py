"""The stack's members on this machine: loopback addresses, paths under one directory, real certificates.

Everything is planned with the cloud path's own pieces (member plans, certificate profiles,
renderers); only addresses and paths differ. Member N listens on 127.0.N+1.10, so every member
keeps the standard ports.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from etcd_stack import certificates
from etcd_stack.addressing import MemberPlan, member_name
from etcd_stack.rendering import Paths

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
        fstab=str(home / "fstab"),
        devices=str(home / "dev"),
    )


@dataclass(frozen=True)
class ClientFiles:
    ca: Path
    cert: Path
    key: Path


def write_pki(base: Path, members: tuple[MemberPlan, ...], client_endpoint: str = "localhost",
              cluster_name: str = CLUSTER_NAME) -> ClientFiles:
    """A fresh CA, each member's key and certificate where its Paths expect them, and the operator's."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = certificates.new_private_key()
    ca = certificates.self_signed_ca(ca_key, certificates.ca_common_name(cluster_name), now)
    for member in members:
        paths = local_paths(base, member)
        key = certificates.new_private_key()
        cert = certificates.issue(
            certificates.member_profile(member.name, member.dns_name, member.ip, client_endpoint), key, ca_key, ca, now
        )
        _write(Path(paths.ca_file), certificates.cert_pem(ca))
        _write(Path(paths.cert_file), certificates.cert_pem(cert))
        _write(Path(paths.key_file), certificates.key_pem(key), mode=0o600)
    operator_key = certificates.new_private_key()
    operator = certificates.issue(certificates.operator_profile(cluster_name), operator_key, ca_key, ca, now)
    client = ClientFiles(base / "pki" / "ca.crt", base / "pki" / "operator.crt", base / "pki" / "operator.key")
    _write(client.ca, certificates.cert_pem(ca))
    _write(client.cert, certificates.cert_pem(operator))
    _write(client.key, certificates.key_pem(operator_key), mode=0o600)
    return client


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)

"""What operators are handed after `pulumi up`: ready-to-paste commands."""

from __future__ import annotations

from collections.abc import Sequence

CA_FILE, CERT_FILE, KEY_FILE = "etcd-ca.crt", "etcd-operator.crt", "etcd-operator.key"


def etcdctl_commands(client_endpoint: str, member_dns_names: Sequence[str]) -> list[str]:
    """Run from inside the VPC (the bastion, or any host reached through SSM)."""
    members = ",".join(f"https://{name}:2379" for name in member_dns_names)
    tls = f"--cacert {CA_FILE} --cert {CERT_FILE} --key {KEY_FILE}"
    return [
        f"pulumi stack output caCertPem > {CA_FILE}",
        f"pulumi stack output operatorCertPem > {CERT_FILE}",
        f"(umask 077; pulumi stack output --show-secrets operatorKeyPem > {KEY_FILE})",
        f"etcdctl --endpoints {members} {tls} endpoint health",
        f"etcdctl --endpoints {members} {tls} endpoint status --write-out table",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} member list --write-out table",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} put greeting hello",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} get greeting",
    ]

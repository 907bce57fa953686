"""What operators are handed after `pulumi up`: ready-to-paste commands."""

from __future__ import annotations

from collections.abc import Sequence

CA_FILE, CERT_FILE, KEY_FILE = "etcd-ca.crt", "etcd-operator.crt", "etcd-operator.key"


def etcdctl_commands(client_endpoint: str, member_dns_names: Sequence[str], shared_key: bool = True) -> list[str]:
    """Run from inside the VPC (the bastion, or any host reached through SSM). Without the shared operator key,
    a person uses the key `etcd-stack operator-csr --name "$ETCD_OPERATOR"` left on their machine."""
    members = ",".join(f"https://{name}:2379" for name in member_dns_names)
    if shared_key:
        cert, key = CERT_FILE, KEY_FILE
        fetch = [f"pulumi stack output operatorCertPem > {cert}",
                 f"(umask 077; pulumi stack output --show-secrets operatorKeyPem > {key})"]
    else:
        cert, key = '"$ETCD_OPERATOR.crt"', '"$ETCD_OPERATOR.key"'
        fetch = [f"pulumi stack output operatorCerts --json | python3 -c 'import json, os, sys; "
                 f"print(json.load(sys.stdin)[os.environ[\"ETCD_OPERATOR\"]], end=\"\")' > {cert}"]
    tls = f"--cacert {CA_FILE} --cert {cert} --key {key}"
    return [
        f"pulumi stack output caCertPem > {CA_FILE}",
        *fetch,
        f"etcdctl --endpoints {members} {tls} endpoint health",
        f"etcdctl --endpoints {members} {tls} endpoint status --write-out table",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} member list --write-out table",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} put greeting hello",
        f"etcdctl --endpoints https://{client_endpoint}:2379 {tls} get greeting",
    ]

"""Per-person client certificates, signed from requests made on each person's machine.

The stack holds only the requests and the certificates: each private key stays where its request was
made (`etcd-stack operator-csr`). config.py has already refused a request that names a host, so no
certificate signed here can pass the members' peer pin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from etcd_stack.member import certificates


@dataclass(frozen=True)
class OperatorCertsArgs:
    # (person, PEM request) pairs, as etcd:operatorCsrs lists them.
    requests: Sequence[tuple[str, str]]
    ca_private_key_pem: pulumi.Input[str]
    ca_cert_pem: pulumi.Input[str]


class OperatorCertificates(pulumi.ComponentResource):
    cert_pems: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: OperatorCertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:pki:OperatorCertificates", name, None, opts)
        self.cert_pems = {}
        for person, request in args.requests:
            # Named by person, not position: removing one person leaves everyone else's certificate alone.
            cert = tls.LocallySignedCert(
                f"{name}-{person}",
                cert_request_pem=request,
                ca_private_key_pem=args.ca_private_key_pem,
                ca_cert_pem=args.ca_cert_pem,
                validity_period_hours=certificates.LEAF_VALIDITY_HOURS,
                early_renewal_hours=certificates.EARLY_RENEWAL_HOURS,
                allowed_uses=list(certificates.CLIENT_USES),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.cert_pems[person] = cert.cert_pem
        self.register_outputs({"cert_pems": self.cert_pems})

"""The certificate profiles of the cluster, and an issuer that makes real X.509 from them.

The profiles are the single statement of what each certificate holds: the Pulumi PKI
(pulumi-tls) issues them on AWS, and `issue`/`self_signed_ca` issue the same profiles with
`cryptography` for the offline mocks and the local sandbox. Keys come from a seed, and ECDSA
signatures are deterministic (RFC 6979), so the same seed gives the same PEM every time.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "etcd-aws"
CA_VALIDITY_HOURS = 10 * 8760
LEAF_VALIDITY_HOURS = 3 * 8760
# pulumi-tls re-issues a certificate on the first `pulumi up` inside this window before expiry.
EARLY_RENEWAL_HOURS = 30 * 24

# pulumi-tls names for key usages, and what each means in X.509.
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_AND_CLIENT_USES = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
CLIENT_USES = ("digital_signature", "key_encipherment", "client_auth")
# Every member certificate, and no other certificate of the cluster's CA, names this host: the peer
# listener admits only certificates that do. `.invalid` (RFC 2606) never resolves: it is an identity, not an address.
PEER_NAME = "peer.etcd-aws.invalid"


@dataclass(frozen=True)
class CertProfile:
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uses: tuple[str, ...]


def member_profile(member_name: str, dns_name: str, ip: str, client_endpoint: str) -> CertProfile:
    """Serves clients and peers and dials peers: the member's own name and address, the shared client
    endpoint (clients reach members through the load balancer), loopback for local tools, and the peer name."""
    return CertProfile(
        common_name=member_name,
        dns_names=(dns_name, client_endpoint, "localhost", PEER_NAME),
        ip_addresses=(ip, "127.0.0.1"),
        uses=SERVER_AND_CLIENT_USES,
    )


def operator_profile(cluster_name: str) -> CertProfile:
    return CertProfile(common_name=f"{cluster_name}-operator", dns_names=(), ip_addresses=(), uses=CLIENT_USES)


def ca_common_name(cluster_name: str, generation: int = 1) -> str:
    return f"{cluster_name} etcd CA" if generation == 1 else f"{cluster_name} etcd CA {generation}"


# --- issuing with cryptography --------------------------------------------------------------

def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key(seed: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from the seed: for stand-ins that must repeat, never for a real cluster."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (order - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _serial(*parts: str, key: ec.EllipticCurvePublicKey) -> int:
    """Unique per certificate, as X.509 needs: a new key gives a new serial; the same inputs, the same one."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256("\0".join(parts).encode() + spki).digest()
    return int.from_bytes(digest[:16], "big") >> 1


def _key_usage(uses: Sequence[str]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digital_signature" in uses, content_commitment=False,
        key_encipherment="key_encipherment" in uses, data_encipherment=False, key_agreement=False,
        key_cert_sign="cert_signing" in uses, crl_sign="crl_signing" in uses,
        encipher_only=False, decipher_only=False,
    )


def _extended_usage(uses: Sequence[str]) -> list[x509.ObjectIdentifier]:
    mapping = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
    return [mapping[use] for use in uses if use in mapping]


def _sans(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]


def self_signed_ca(key: ec.EllipticCurvePrivateKey, common_name: str, not_before: datetime.datetime,
                   validity_hours: int = CA_VALIDITY_HOURS, uses: Sequence[str] = CA_USES) -> x509.Certificate:
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(_serial("ca", common_name, key=key.public_key()))
        .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(hours=validity_hours))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(uses), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


def signing_request(key: ec.EllipticCurvePrivateKey, common_name: str, dns_names: Sequence[str],
                    ip_addresses: Sequence[str]) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


def sign(request: x509.CertificateSigningRequest, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
         uses: Sequence[str], not_before: datetime.datetime,
         validity_hours: int = LEAF_VALIDITY_HOURS) -> x509.Certificate:
    """What a CA does with a CSR: copies its subject and SANs, adds the usages it grants."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject).issuer_name(ca_cert.subject).public_key(request.public_key())
        .serial_number(_serial("leaf", request.subject.rfc4514_string(), ca_cert.subject.rfc4514_string(),
                               key=request.public_key()))
        .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(hours=validity_hours))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(uses), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    extended = _extended_usage(uses)
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)


def issue(profile: CertProfile, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
          ca_cert: x509.Certificate, not_before: datetime.datetime) -> x509.Certificate:
    request = signing_request(key, profile.common_name, profile.dns_names, profile.ip_addresses)
    return sign(request, ca_key, ca_cert, profile.uses, not_before)


def start_of_year(now: datetime.datetime | None = None) -> datetime.datetime:
    """A stable not-before: the same all year, so offline renders repeat, and always in the past."""
    now = now or datetime.datetime.now(datetime.UTC)
    return datetime.datetime(now.year, 1, 1, tzinfo=datetime.UTC)

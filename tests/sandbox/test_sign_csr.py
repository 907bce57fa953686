"""`etcd-stack sandbox sign-csr`: a person's request signed by the sandbox's CA under the stack's own rules."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from etcd_stack import cli
from etcd_stack.member import certificates
from etcd_stack.member.certificates import PEER_NAME
from etcd_stack.sandbox.local import LocalCa


def test_a_persons_request_becomes_a_client_certificate_of_the_sandbox_ca(tmp_path):
    ca = LocalCa.create("sandbox")
    ca.save(tmp_path)
    assert cli.main(["operator-csr", "--name", "bob", "--out", str(tmp_path / "laptop")]) == 0
    assert cli.main(["sandbox", "sign-csr", "--dir", str(tmp_path), "--csr", str(tmp_path / "laptop/bob.csr")]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "laptop/bob.crt").read_bytes())
    cert.verify_directly_issued_by(ca.cert)
    key = serialization.load_pem_private_key((tmp_path / "laptop/bob.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_request_naming_the_peer_name_is_refused_as_the_stack_refuses_it(tmp_path, capsys):
    LocalCa.create("sandbox").save(tmp_path)
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mallory")]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(PEER_NAME)]), critical=False)
               .sign(certificates.new_private_key(), hashes.SHA256()))
    path = tmp_path / "mallory.csr"
    path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    assert cli.main(["sandbox", "sign-csr", "--dir", str(tmp_path), "--csr", str(path)]) == cli.EXIT_BAD_INPUT
    assert "--csr: '<request with extensions>' is not allowed" in capsys.readouterr().err
    assert not path.with_suffix(".crt").exists()

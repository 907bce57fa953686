"""Per-person operator certificates: signed from requests, no key in the stack, never a peer."""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from etcd_stack import cli
from etcd_stack.member.certificates import PEER_NAME
from etcd_stack.preview import offline

SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
KEY = "tls:index/privateKey:PrivateKey"


@pytest.fixture(scope="module")
def requests_made(tmp_path_factory):
    """Two people's requests, made as each would on their own machine."""
    out = tmp_path_factory.mktemp("laptops")
    for person in ("alice", "bob"):
        assert cli.main(["operator-csr", "--name", person, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def run(requests_made):
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:operatorCsrs": json.dumps({p: (requests_made / f"{p}.csr").read_text()
                                                  for p in ("alice", "bob")})}
    return offline.run(raw, "test")


def test_the_command_keeps_the_key_private_and_refuses_to_overwrite_it(requests_made, capsys):
    key = requests_made / "alice.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    serialization.load_pem_private_key(key.read_bytes(), None)
    assert cli.main(["operator-csr", "--name", "alice", "--out", str(requests_made)]) == cli.EXIT_BAD_INPUT
    assert "exists" in capsys.readouterr().err


def test_the_command_refuses_a_name_the_stack_would_refuse(tmp_path, capsys):
    assert cli.main(["operator-csr", "--name", "etcd-0", "--out", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("etcd-stack operator-csr: --name: 'etcd-0' is not allowed")
    assert list(tmp_path.iterdir()) == []


def test_each_person_gets_a_client_certificate_for_their_own_key(run, requests_made):
    ca = x509.load_pem_x509_certificate(run.outputs["caCertPem"].encode())
    assert set(run.outputs["operatorCerts"]) == {"alice", "bob"}
    for person, pem in run.outputs["operatorCerts"].items():
        cert = x509.load_pem_x509_certificate(pem.encode())
        key = serialization.load_pem_private_key((requests_made / f"{person}.key").read_bytes(), None)
        assert cert.public_key() == key.public_key()
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == person
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        # What the members' peer listener checks: this certificate does not name the peer identity.
        assert PEER_NAME not in str(cert.extensions)


def test_no_person_key_is_in_the_stack(run, requests_made):
    signed = {r.name for r in run.of_type(SIGNED)}
    assert {"etcd-operators-alice", "etcd-operators-bob"} <= signed
    assert not [r for r in run.of_type(KEY) if "alice" in r.name or "bob" in r.name]
    key_pem = (requests_made / "alice.key").read_text()
    assert key_pem not in str([r.inputs for r in run.resources]) + str(run.outputs)


def test_certificates_are_named_by_person_so_removing_one_keeps_the_others(requests_made):
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:operatorCsrs": json.dumps({"bob": (requests_made / "bob.csr").read_text()})}
    names = {r.name for r in offline.run(raw, "test").of_type(SIGNED)}
    assert "etcd-operators-bob" in names and "etcd-operators-alice" not in names

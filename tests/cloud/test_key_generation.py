"""etcd:keyGeneration replaces every member's and the operator's private key, and leaves no earlier key
readable in a parameter's history."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from etcd_stack.preview.wire import reveal

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
PARAMETER = "aws:ssm/parameter:Parameter"


@pytest.fixture(scope="module")
def generations():
    from etcd_stack.preview import offline

    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static"}
    return {generation: offline.run({**raw, "etcd:keyGeneration": str(generation)}, "test") for generation in (1, 2)}


def key_parameters(run) -> dict[str, str]:
    return {p.inputs["name"]: reveal(p.inputs["value"]) for p in run.of_type(PARAMETER)
            if p.inputs["name"].endswith("/key")}


def test_a_new_generation_gives_every_member_and_the_operator_a_new_private_key(generations):
    first, second = (key_parameters(generations[g]) for g in (1, 2))
    assert sorted(first) == sorted(second) == [f"/etcd-aws/test/etcd/etcd-{i}/tls/key" for i in range(3)]
    for name in first:
        assert first[name] != second[name], name
    operator = [reveal(generations[g].outputs["operatorKeyPem"]) for g in (1, 2)]
    assert operator[0] != operator[1]
    names = {g: sorted(r.name for r in generations[g].of_type(PRIVATE_KEY)) for g in (1, 2)}
    # The CA keeps its key: only what the CA issued to is renewed.
    assert names[2] == sorted(["etcd-pki-ca", *(f"etcd-pki-etcd-{i}-k2" for i in range(3)), "etcd-pki-operator-k2"])
    assert "etcd-pki-etcd-0" in names[1]


def test_each_new_certificate_belongs_to_the_new_key(generations):
    run = generations[2]
    for index in range(3):
        key = load_pem_private_key(key_parameters(run)[f"/etcd-aws/test/etcd/etcd-{index}/tls/key"].encode(), None)
        (cert,) = [reveal(p.inputs["value"]) for p in run.of_type(PARAMETER)
                   if p.inputs["name"] == f"/etcd-aws/test/etcd/etcd-{index}/tls/cert"]
        assert x509.load_pem_x509_certificate(cert.encode()).public_key() == key.public_key()


def test_a_key_parameter_is_replaced_old_one_deleted_first_when_its_key_changes(generations):
    # SSM keeps earlier versions, values included, readable by version (name:N) or GetParameterHistory;
    # deleting the parameter takes its history with it. Certificates and the bundle are public: updated.
    for parameter in generations[1].of_type(PARAMETER):
        if parameter.inputs["name"].endswith("/key"):
            assert parameter.replace_on_changes == ("value", "keyId") and parameter.delete_before_replace, (
                parameter.name)
        else:
            assert parameter.replace_on_changes == () and not parameter.delete_before_replace, parameter.name


def test_the_parameter_names_and_the_key_policy_stay_across_generations(generations):
    def names(run):
        return sorted(p.inputs["name"] for p in run.of_type(PARAMETER))

    assert names(generations[1]) == names(generations[2])
    policies = [generations[g].named("etcd-secrets", "aws:kms/key:Key").inputs["policy"] for g in (1, 2)]
    assert policies[0] == policies[1]

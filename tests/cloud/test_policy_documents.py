"""Every IAM, KMS and bucket policy document the stack writes, through parliament (duo-labs), a linter that
knows every AWS action, its resource types and its condition keys (its bundled IAM definition)."""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

# Findings that concern identity policies and do not apply to a resource's own policy, with why.
NOT_FOR_RESOURCE_POLICIES = {
    # A role's trust policy has a Principal and no Resource (IAM user guide, "Role trust policy").
    "assumeRolePolicy": {("MALFORMED", "Statement contains neither Resource nor NotResource")},
    # In a key policy, "*" means the key itself (KMS developer guide, "Key policies").
    "aws:kms/key:Key": {("RESOURCE_STAR", None)},
}


@pytest.fixture(scope="module")
def documents() -> list[tuple[str, str, str]]:
    """(resource, property, document) for every policy document, with the bastion on."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from etcd_stack.preview import offline
    from tests.conftest import encode, openssh_public

    raw = {"aws:region": "eu-west-2", "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"]),
           "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate())}
    run = offline.run(raw, "test")
    return [(f"{r.type} {r.name}", prop, r.inputs[prop]) for r in run.resources
            for prop in ("policy", "assumeRolePolicy")
            if r.type.startswith("aws:") and isinstance(r.inputs.get(prop), str)]


def findings(label: str, prop: str, document: str) -> list[str]:
    accepted = NOT_FOR_RESOURCE_POLICIES.get(prop, set()) | NOT_FOR_RESOURCE_POLICIES.get(label.split()[0], set())
    return [f"{label} {prop}: {f.issue} {f.detail}" for f in analyze_policy_string(document).findings
            if (f.issue, str(f.detail)) not in accepted and (f.issue, None) not in accepted]


def test_the_stack_writes_every_kind_of_policy_document(documents):
    kinds = {label.split()[0] + " " + prop for label, prop, _ in documents}
    assert kinds == {"aws:iam/role:Role assumeRolePolicy", "aws:iam/rolePolicy:RolePolicy policy",
                     "aws:kms/key:Key policy", "aws:s3/bucketPolicy:BucketPolicy policy"}


def test_every_policy_document_passes_the_linter(documents):
    assert [problem for label, prop, text in documents for problem in findings(label, prop, text)] == []


@pytest.mark.parametrize(("old", "new", "issue"), [
    ('"kms:Decrypt"', '"kms:Decrpyt"', "UNKNOWN_ACTION"),
    ('"kms:ViaService"', '"kms:ViaServices"', "UNKNOWN_CONDITION_FOR_ACTION"),
])
def test_the_linter_catches_a_slip_in_the_key_policy(documents, old, new, issue):
    (key_policy,) = [text for label, _, text in documents if label.startswith("aws:kms/key:Key")]
    assert old in key_policy
    assert any(problem.split(": ", 1)[1].startswith(issue)
               for problem in findings("aws:kms/key:Key k", "policy", key_policy.replace(old, new)))


def test_the_linter_catches_a_read_action_on_the_wrong_resource_type(documents):
    (read,) = [json.loads(text) for label, _, text in documents if label.endswith(" etcd-etcd-0-read-tls")]
    read["Statement"][0]["Resource"] = "arn:aws:s3:::some-bucket/etcd/etcd-0/tls/key"
    assert any("RESOURCE_MISMATCH" in problem for problem in findings("r", "policy", json.dumps(read)))

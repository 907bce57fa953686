"""Who can read and decrypt each member's key, as AWS would decide it over the stack as rendered."""

from __future__ import annotations

import dataclasses
import json

import pytest

from etcd_stack.preview import mocks
from tests.cloud.effective_access import (
    ATTACHMENT,
    PARAMETER,
    Principal,
    Request,
    StackAccess,
    allowed,
)

REGION = "eu-west-2"
CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
MEMBERS = [f"etcd-access-{i}" for i in range(3)]
KEYS = [f"/etcd-aws/test/etcd/etcd-{i}/tls/key" for i in range(3)]


@pytest.fixture(scope="module")
def run():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from etcd_stack.preview import offline
    from tests.conftest import encode, openssh_public

    raw = {"aws:region": REGION, "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"]),
           "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate())}
    return offline.run(raw, "test")


@pytest.fixture(scope="module")
def access(run) -> StackAccess:
    return StackAccess(run, mocks.ACCOUNT_ID, REGION)


def with_managed(run, role: str, policy_arn: str):
    """The same run with an AWS managed policy attached to one of its roles."""
    from etcd_stack.preview.offline import Registered

    attachment = Registered(ATTACHMENT, f"{role}-extra", None,
                            {"role": run.named(role, "aws:iam/role:Role").state["name"], "policyArn": policy_arn})
    return dataclasses.replace(run, resources=[*run.resources, attachment])


def under_the_default_key(run):
    """The same run with every parameter a SecureString under the account's aws/ssm key."""
    return dataclasses.replace(run, resources=[
        dataclasses.replace(r, inputs={k: v for k, v in r.inputs.items() if k != "keyId"}) if r.type == PARAMETER
        else r for r in run.resources])


def without_denies(principal: Principal) -> Principal:
    return Principal(principal.arn, principal.account, tuple(
        {**document, "Statement": [s for s in document["Statement"] if s["Effect"] == "Allow"]}
        for document in principal.policies))


# --- the stack as built -------------------------------------------------------------------------------

def test_every_member_reads_and_decrypts_its_own_key_and_no_other(access):
    for index, role in enumerate(MEMBERS):
        member = access.role(role)
        assert access.readable(member, KEYS) == [KEYS[index]], role
        # Its certificate and the CA bundle too, and nothing of another member.
        assert access.readable(member) == sorted(
            [KEYS[index], f"/etcd-aws/test/etcd/etcd-{index}/tls/cert", "/etcd-aws/test/etcd/tls/ca-bundle"])


def test_the_bastion_reads_no_parameter_at_all(access):
    bastion = access.role("etcd-bastion")
    assert [name for name, secret in access.secrets.items() if access.can_read(bastion, secret)] == []
    assert access.readable(bastion) == []


def test_another_instance_of_the_account_with_the_managed_core_policy_reads_no_key(access):
    other = access.other_principal("someone-elses-instance", CORE)
    # The managed policy lets it fetch every parameter; the stack's key refuses to decrypt them.
    assert all(access.can_read(other, access.secrets[name]) for name in KEYS)
    assert access.readable(other) == []


def test_the_account_administers_the_key_but_an_administrator_decrypts_nothing(access, run):
    admin = access.other_principal("administrator", ADMIN)
    assert access.readable(admin) == []
    key = run.of_type("aws:kms/key:Key")[0]
    policy = access.key_policies[key.state["arn"]]
    for action in ("kms:ScheduleKeyDeletion", "kms:PutKeyPolicy", "kms:EnableKeyRotation"):
        assert allowed(Request(admin, action, key.state["arn"]), policy, kms=True), action
    for action in ("kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert not allowed(Request(admin, action, key.state["arn"]), policy, kms=True), action


def test_the_deployer_reads_and_decrypts_every_parameter_through_ssm_only(access, run):
    deployer = access.other_principal(mocks.DEPLOYER_ROLE, ADMIN)
    assert access.readable(deployer) == sorted(access.secrets)
    key = run.of_type("aws:kms/key:Key")[0]
    secret = access.secrets[KEYS[0]]
    direct = {"kms:CallerAccount": mocks.ACCOUNT_ID, "kms:EncryptionContext:PARAMETER_ARN": secret.arn}
    assert not allowed(Request(deployer, "kms:Decrypt", key.state["arn"], direct), access.key_policies[
        key.state["arn"]], kms=True), "outside SSM the deployer cannot decrypt"


def test_only_the_deployer_can_encrypt_a_new_ca_bundle_or_key(access):
    # Writing a SecureString needs kms:Encrypt under the parameter's context: whoever cannot encrypt
    # cannot choose whom members trust.
    writers = [*(access.role(role) for role in [*MEMBERS, "etcd-bastion"]),
               access.other_principal("someone-elses-instance", CORE), access.other_principal("administrator", ADMIN)]
    for name in ["/etcd-aws/test/etcd/tls/ca-bundle", *KEYS]:
        assert [p.arn for p in writers if access.can_use_key(p, access.secrets[name], "kms:Encrypt")] == [], name
        # Nor may an instance overwrite the parameter at all.
        assert [p.arn for p in writers[:4] if allowed(Request(p, "ssm:PutParameter", access.secrets[name].arn))] == []
        assert access.can_use_key(access.other_principal(mocks.DEPLOYER_ROLE, ADMIN), access.secrets[name],
                                  "kms:Encrypt")


def test_a_member_cannot_decrypt_its_own_key_outside_ssm(access, run):
    member = access.role(MEMBERS[0])
    key_arn = run.of_type("aws:kms/key:Key")[0].state["arn"]
    context = {"kms:CallerAccount": mocks.ACCOUNT_ID, "kms:EncryptionContext:PARAMETER_ARN":
               access.secrets[KEYS[0]].arn}
    assert not allowed(Request(member, "kms:Decrypt", key_arn, context), access.key_policies[key_arn], kms=True)


def test_no_instance_role_reads_parameters_it_does_not_own(access):
    elsewhere = access.parameter_arn("/someone-else/database-password")
    for role in [*MEMBERS, "etcd-bastion"]:
        for action in ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory"):
            assert not allowed(Request(access.role(role), action, elsewhere)), (role, action)
        assert not allowed(Request(access.role(role), "ssm:GetParametersByPath", access.parameter_arn("/"))), role


def test_the_policies_name_the_arns_aws_issues(access, run):
    for parameter in run.of_type(PARAMETER):
        assert parameter.state["arn"] == f"arn:aws:ssm:{REGION}:{mocks.ACCOUNT_ID}:parameter{parameter.inputs['name']}"
    role = run.named(MEMBERS[0], "aws:iam/role:Role")
    assert role.state["arn"] == f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/{role.state['name']}"
    (key,) = run.of_type("aws:kms/key:Key")
    assert key.state["arn"] == f"arn:aws:kms:{REGION}:{mocks.ACCOUNT_ID}:key/{key.id}"
    assert {p.inputs["keyId"] for p in run.of_type(PARAMETER)} == {key.state["arn"]}


# --- negative controls: the verdicts flip when the protections go ----------------------------------------

def test_with_the_managed_core_policy_back_on_the_bastion_its_denies_keep_it_off_every_parameter(run):
    access = StackAccess(under_the_default_key(with_managed(run, "etcd-bastion", CORE)), mocks.ACCOUNT_ID, REGION)
    bastion = access.role("etcd-bastion")
    assert [name for name, secret in access.secrets.items() if access.can_read(bastion, secret)] == []
    # Its own parameters aside, the managed policy does what it says.
    assert allowed(Request(bastion, "ssm:GetParameter", access.parameter_arn("/someone-else/x")))


def test_the_managed_core_policy_and_the_default_key_hand_every_key_to_another_instance(run):
    # The negative control: as the stack was, with the account's aws/ssm key, the verdict flips.
    access = StackAccess(under_the_default_key(run), mocks.ACCOUNT_ID, REGION)
    assert access.readable(access.other_principal("someone-elses-instance", CORE), KEYS) == KEYS


def test_without_its_denies_the_bastion_with_the_core_policy_would_read_every_key(run):
    access = StackAccess(under_the_default_key(with_managed(run, "etcd-bastion", CORE)), mocks.ACCOUNT_ID, REGION)
    assert access.readable(without_denies(access.role("etcd-bastion")), KEYS) == KEYS


def test_under_the_default_key_a_member_with_the_core_policy_is_still_denied_other_members_keys(run):
    access = StackAccess(under_the_default_key(with_managed(run, MEMBERS[0], CORE)), mocks.ACCOUNT_ID, REGION)
    member = access.role(MEMBERS[0])
    # The explicit denies on its role outweigh the managed policy's allow on "*".
    assert access.readable(member, KEYS) == [KEYS[0]]
    assert not any(access.can_read(member, access.secrets[name]) for name in KEYS[1:])


def test_without_the_explicit_denies_that_member_would_read_every_key(run):
    access = StackAccess(under_the_default_key(with_managed(run, MEMBERS[0], CORE)), mocks.ACCOUNT_ID, REGION)
    assert access.readable(without_denies(access.role(MEMBERS[0])), KEYS) == KEYS


# --- the backup bucket's policy -----------------------------------------------------------------------

def test_members_write_snapshots_only_over_tls_and_the_bastion_not_at_all(access, run):
    bucket = run.of_type("aws:s3/bucket:Bucket")[0]
    bucket_policy = json.loads(run.of_type("aws:s3/bucketPolicy:BucketPolicy")[0].inputs["policy"])
    snapshot = f"{bucket.state['arn']}/etcd/snapshot.db"
    member = access.role(MEMBERS[1])
    assert allowed(Request(member, "s3:PutObject", snapshot, {"aws:SecureTransport": "true"}), bucket_policy)
    assert not allowed(Request(member, "s3:PutObject", snapshot, {"aws:SecureTransport": "false"}), bucket_policy)
    assert not allowed(Request(member, "s3:PutObject", f"{bucket.state['arn']}/elsewhere",
                               {"aws:SecureTransport": "true"}), bucket_policy)
    assert not allowed(Request(access.role("etcd-bastion"), "s3:GetObject", snapshot,
                               {"aws:SecureTransport": "true"}), bucket_policy)


RELEASE = "_releases/etcd-v3.6.14-linux-amd64.tar.gz"


def test_every_member_downloads_the_etcd_release_and_decrypts_it_through_s3(access):
    for role in MEMBERS:
        assert access.can_download(access.role(role), RELEASE), role


def test_no_member_writes_or_deletes_the_release_or_reads_beside_it(access, run):
    bucket_arn = run.of_type("aws:s3/bucket:Bucket")[0].state["arn"]
    tls = {"aws:SecureTransport": "true"}
    for role in MEMBERS:
        member = access.role(role)
        assert not access.can_upload(member, RELEASE), role
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention"):
            assert not allowed(Request(member, action, f"{bucket_arn}/{RELEASE}", tls), access.bucket_policy), action
        for other in ("_releases/etcd-v3.6.13-linux-amd64.tar.gz", "_releases/other", "stack-created"):
            assert not access.can_download(member, other), (role, other)


def test_the_bastion_neither_writes_nor_reads_the_release(access):
    bastion = access.role("etcd-bastion")
    assert not access.can_upload(bastion, RELEASE)
    assert not access.can_download(bastion, RELEASE)


# --- the evaluator itself -----------------------------------------------------------------------------

def _principal(*statements) -> Principal:
    return Principal("arn:aws:iam::111122223333:role/r", "111122223333",
                     ({"Version": "2012-10-17", "Statement": list(statements)},))


def test_an_explicit_deny_beats_any_allow():
    allow = {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:*:*:parameter/x/*"}
    principal = _principal(allow, deny)
    assert allowed(Request(principal, "ssm:GetParameter", "arn:aws:ssm:r:1:parameter/y/k"))
    assert not allowed(Request(principal, "ssm:GetParameter", "arn:aws:ssm:r:1:parameter/x/k"))
    assert not allowed(Request(_principal(allow), "s3:GetObject", "arn:aws:s3:::b/k")), "implicit deny"


def test_a_key_policy_naming_the_account_leaves_the_decision_to_iam():
    key_policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                                 "Action": "kms:*", "Resource": "*"}]}
    with_iam = _principal({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"})
    assert allowed(Request(with_iam, "kms:Decrypt", "arn:aws:kms:r:1:key/k"), key_policy, kms=True)
    assert not allowed(Request(_principal(), "kms:Decrypt", "arn:aws:kms:r:1:key/k"), key_policy, kms=True)
    assert not allowed(Request(with_iam, "kms:Decrypt", "arn:aws:kms:r:1:key/k"), {"Statement": []}, kms=True)


def test_conditions_need_every_key_and_any_value():
    statement = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/r",
                                                "kms:EncryptionContext:PARAMETER_ARN": ["a", "b"]},
                               "StringLike": {"kms:ViaService": "ssm.*.amazonaws.com"}}}
    policy = {"Statement": [statement]}
    principal = _principal()

    def decrypts(**context):
        return allowed(Request(principal, "kms:Decrypt", "k", context), policy, kms=True)

    assert decrypts(**{"kms:EncryptionContext:PARAMETER_ARN": "b", "kms:ViaService": "ssm.eu-west-2.amazonaws.com"})
    assert not decrypts(**{"kms:EncryptionContext:PARAMETER_ARN": "c", "kms:ViaService": "ssm.x.amazonaws.com"})
    assert not decrypts(**{"kms:EncryptionContext:PARAMETER_ARN": "a"})
    other = Principal("arn:aws:iam::111122223333:role/other", "111122223333")
    assert not allowed(Request(other, "kms:Decrypt", "k", {"kms:EncryptionContext:PARAMETER_ARN": "a",
                                                            "kms:ViaService": "ssm.x.amazonaws.com"}), policy, kms=True)


def test_an_operator_the_evaluator_does_not_know_is_refused_not_guessed():
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*",
                 "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}
    with pytest.raises(NotImplementedError):
        allowed(Request(_principal(statement), "s3:GetObject", "x", {"aws:CurrentTime": "2030-01-01T00:00:00Z"}))


def test_the_key_rotates_and_its_alias_carries_the_cluster_and_the_stack(run):
    (key,) = run.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    (alias,) = run.of_type("aws:kms/alias:Alias")
    # Alias names are unique per account and region: two stacks must not collide.
    assert alias.inputs == {"name": "alias/etcd-aws/test/etcd", "targetKeyId": key.id}

"""Snapshots under the stack's KMS key, as AWS would decide each request: S3 checks the identity and bucket
policies, then asks KMS on the caller's behalf, through S3 and with the bucket's ARN as encryption context
(an S3 Bucket Key), and the key policy alone decides that call."""

from __future__ import annotations

import pytest

from etcd_stack.preview import mocks, offline
from tests.cloud.effective_access import Principal, Request, StackAccess, allowed

REGION = "eu-west-2"
BREAK_GLASS = f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/etcd-break-glass"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
MEMBERS = [f"etcd-access-{index}" for index in range(3)]
SNAPSHOT = "etcd/20261121T103950Z-etcd-1.db"
MEMBER_GRANTS = "MembersWriteAndReadSnapshotsThroughS3"
# The default key policy KMS gives a key created without one: the account's IAM policies decide.
DELEGATING = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{mocks.ACCOUNT_ID}:root"},
                             "Action": "kms:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def run():
    return offline.run({"aws:region": REGION, "etcd:bastion": "false", "etcd:bootstrap": "static",
                        "etcd:backupBreakGlassRoleArn": BREAK_GLASS}, "test")


@pytest.fixture(scope="module")
def access(run) -> StackAccess:
    return StackAccess(run, mocks.ACCOUNT_ID, REGION)


def identity(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def break_glass(access: StackAccess) -> Principal:
    # Its own account's administrators grant it S3; the stack grants it nothing but the key.
    return Principal(BREAK_GLASS, mocks.ACCOUNT_ID, (identity(
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{access.bucket_arn}/*"}),))


def without(key_policy: dict, sid: str) -> dict:
    return {**key_policy, "Statement": [s for s in key_policy["Statement"] if s.get("Sid") != sid]}


def test_the_bucket_encrypts_by_default_with_the_stacks_key_and_a_bucket_key(access, run):
    (key,) = run.of_type("aws:kms/key:Key")
    assert access.bucket_key_arn == key.state["arn"]
    assert access.bucket_key_enabled
    rule = run.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0]
    assert rule.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    # The key policy names the bucket, the bucket the key: both wired in the program, neither from config.
    assert ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "etcd-backup") in run.named("etcd-backup-created", "aws:s3/bucketObjectv2:BucketObjectv2").depends_on


@pytest.mark.parametrize("role", MEMBERS)
def test_every_member_uploads_and_reads_back_a_snapshot_under_its_cluster_prefix(access, role):
    member = access.role(role)
    assert access.can_upload(member, SNAPSHOT)
    assert access.can_download(member, SNAPSHOT)
    # Outside its prefix S3 refuses the member, whatever the key would say.
    assert not access.can_upload(member, "elsewhere/x.db")


def test_a_member_calling_kms_itself_is_refused(access):
    member = access.role(MEMBERS[0])
    direct = {"kms:CallerAccount": mocks.ACCOUNT_ID, "kms:EncryptionContext:aws:s3:arn": access.bucket_arn}
    policy = access.key_policies[access.bucket_key_arn]
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert not allowed(Request(member, action, access.bucket_key_arn, direct), policy, kms=True), action
        # Through another service with the same context: refused too.
        other = {**direct, "kms:ViaService": f"ssm.{REGION}.amazonaws.com"}
        assert not allowed(Request(member, action, access.bucket_key_arn, other), policy, kms=True), action
    assert access.can_use_key_through_s3(member, "kms:Decrypt", access.bucket_arn), "the control: through S3"


def test_the_key_refuses_the_encryption_context_of_another_bucket_or_of_an_object(access):
    member = access.role(MEMBERS[1])
    for context in ("arn:aws:s3:::someone-elses-bucket", f"{access.bucket_arn}/{SNAPSHOT}"):
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            assert not access.can_use_key_through_s3(member, action, context), (action, context)


def test_another_principal_with_s3_and_kms_star_is_refused_by_the_key_policy(access):
    anyone = Principal(f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/data-pipeline", mocks.ACCOUNT_ID, (identity(
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}),))
    # The bucket policy lets it at the marker object; the key does not.
    marker = "stack-created"
    assert allowed(Request(anyone, "s3:GetObject", f"{access.bucket_arn}/{marker}", {"aws:SecureTransport": "true"}),
                   access.bucket_policy)
    assert not access.can_download(anyone, marker)
    assert not access.can_upload(anyone, marker)
    # The negative control: a key policy that hands decisions to IAM (the account's default) lets it in.
    assert access.can_download(anyone, marker, key_policy=DELEGATING)


def test_the_break_glass_role_reads_snapshots_and_encrypts_nothing(access):
    role = break_glass(access)
    assert access.can_download(role, SNAPSHOT)
    assert not access.can_use_key_through_s3(role, "kms:GenerateDataKey", access.bucket_arn)
    assert not access.can_upload(role, "etcd/forged.db")


def test_the_deployer_writes_the_stacks_marker_but_reads_no_snapshot(access):
    deployer = access.other_principal(mocks.DEPLOYER_ROLE, ADMIN)
    assert access.can_use_key_through_s3(deployer, "kms:GenerateDataKey", access.bucket_arn)
    assert access.can_download(deployer, "stack-created")
    # The key would decrypt; the bucket policy keeps every snapshot from it.
    assert not access.can_download(deployer, SNAPSHOT)


def test_an_administrator_of_the_account_decrypts_no_snapshot_and_no_marker(access):
    admin = access.other_principal("administrator", ADMIN)
    assert not access.can_download(admin, SNAPSHOT)
    assert not access.can_download(admin, "stack-created")


def test_without_the_key_policys_grant_the_members_could_neither_write_nor_read(access):
    member = access.role(MEMBERS[2])
    bare = without(access.key_policies[access.bucket_key_arn], MEMBER_GRANTS)
    assert not access.can_upload(member, SNAPSHOT, key_policy=bare)
    assert not access.can_download(member, SNAPSHOT, key_policy=bare)
    # Nor would their IAM policies, if the key left the decision to IAM: the key policy is their one grant.
    assert not access.can_download(member, SNAPSHOT, key_policy=DELEGATING)


@pytest.mark.parametrize(("headers", "accepted"), [
    ({}, True),
    ({"s3:x-amz-server-side-encryption": "aws:kms", "s3:x-amz-server-side-encryption-aws-kms-key-id": "KEY"}, True),
    ({"s3:x-amz-server-side-encryption": "AES256"}, False),
    # aws:kms without a key id means the account's aws/s3 key.
    ({"s3:x-amz-server-side-encryption": "aws:kms"}, False),
    ({"s3:x-amz-server-side-encryption": "aws:kms",
      "s3:x-amz-server-side-encryption-aws-kms-key-id": f"arn:aws:kms:{REGION}:{mocks.ACCOUNT_ID}:key/other"}, False),
    ({"s3:x-amz-server-side-encryption": "aws:kms:dsse", "s3:x-amz-server-side-encryption-aws-kms-key-id": "KEY"},
     False),
    # SSE-C: a key only the uploader holds, whatever else the request says.
    ({"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}, False),
])
def test_an_upload_takes_the_stacks_key_or_is_refused(access, headers, accepted):
    member = access.role(MEMBERS[0])
    headers = {name: access.bucket_key_arn if value == "KEY" else value for name, value in headers.items()}
    assert access.can_upload(member, SNAPSHOT, headers) is accepted

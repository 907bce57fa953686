"""The backup bucket as the program registers it: nobody can replace or remove a snapshot within the
retention, only the members and the break-glass role read them, and destroy keeps them by default.
The bucket policy is evaluated as IAM would evaluate it, request by request (tests/cloud/effective_access.py);
encryption under the stack's key is in test_backup_encryption.py."""

from __future__ import annotations

import json

import pytest

from etcd_stack.cloud.backup import bucket_policy, log_retention_days
from etcd_stack.config import ConfigError
from etcd_stack.preview import offline
from tests.cloud.effective_access import Principal, Request, allowed, refused_by

BREAK_GLASS = "arn:aws:iam::123456789012:role/etcd-break-glass"
ADMIN = "arn:aws:iam::123456789012:role/Administrator"
BUCKET = "aws:s3/bucket:Bucket"
# aws:SecureTransport, which AWS sets on every request: true unless a test says otherwise.
TLS = {"aws:SecureTransport": "true"}


def run(**settings: str) -> offline.OfflineRun:
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:backupRetentionDays": "21", **{f"etcd:{key}": value for key, value in settings.items()}}
    return offline.run(raw, "test")


@pytest.fixture(scope="module")
def governed():
    return run(backupBreakGlassRoleArn=BREAK_GLASS)


@pytest.fixture(scope="module")
def policy_only():
    return run(backupLock="policy", backupsOnDestroy="delete")


def only(stack, typ):
    (resource,) = stack.of_type(typ)
    return resource


def bucket_arn(stack) -> str:
    return only(stack, BUCKET).state["arn"]


def member_role_arns(stack) -> list[str]:
    return [stack.named(f"etcd-access-{index}", "aws:iam/role:Role").state["arn"] for index in range(3)]


def refusals(stack, principal: str, action: str, key: str, **context: str) -> list[str]:
    """The bucket policy's statements that refuse the request."""
    document = json.loads(only(stack, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    return refused_by(Request(Principal.of(principal), action, f"{bucket_arn(stack)}/{key}", {**TLS, **context}),
                      document)


SNAPSHOT = "etcd/20261121T103950Z-etcd-1.db"
COMPLETE_NEW = {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}
OVERWRITE = {"s3:ObjectCreationOperation": "true"}
PART = {"s3:ObjectCreationOperation": "false"}


# --- immutability ---------------------------------------------------------------------------------

def test_object_lock_retains_every_snapshot_for_the_retention_in_governance_mode_by_default(governed):
    lock = only(governed, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["objectLockEnabled"] == "Enabled"
    assert lock.inputs["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 21}}
    # Enabled on the versioned bucket, so that a move from `policy` does not replace the bucket.
    assert "objectLockEnabled" not in only(governed, BUCKET).inputs
    assert ("aws:s3/bucketVersioning:BucketVersioning", "etcd-backup") in lock.depends_on


def test_compliance_mode_is_a_setting():
    lock = only(run(backupLock="compliance"), "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["rule"]["defaultRetention"] == {"mode": "COMPLIANCE", "days": 21}


def test_without_object_lock_the_policy_denies_stand_alone(policy_only):
    assert policy_only.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration") == []
    member = member_role_arns(policy_only)[0]
    assert refusals(policy_only, member, "s3:PutObject", SNAPSHOT, **OVERWRITE) == ["RefuseOverwrites"]
    assert refusals(policy_only, member, "s3:DeleteObjectVersion", SNAPSHOT) == ["RefuseRemoval"]


@pytest.mark.parametrize("principal", ["member", ADMIN, BREAK_GLASS])
def test_nobody_overwrites_a_snapshot_and_new_ones_go_through(governed, principal):
    principal = member_role_arns(governed)[1] if principal == "member" else principal
    assert refusals(governed, principal, "s3:PutObject", SNAPSHOT, **OVERWRITE) == ["RefuseOverwrites"]
    # A multipart upload: its parts carry no condition, its completion carries If-None-Match.
    assert refusals(governed, principal, "s3:PutObject", SNAPSHOT, **PART) == []
    assert refusals(governed, principal, "s3:PutObject", SNAPSHOT, **COMPLETE_NEW) == []


@pytest.mark.parametrize("action", ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                                    "s3:PutObjectRetention"])
def test_only_the_break_glass_role_removes_a_snapshot_or_shortens_its_retention(governed, action):
    for principal in [*member_role_arns(governed), ADMIN]:
        assert refusals(governed, principal, action, SNAPSHOT) == ["RefuseRemoval"]
    assert refusals(governed, BREAK_GLASS, action, SNAPSHOT) == []


def test_without_a_break_glass_role_nobody_removes_a_snapshot():
    document = json.loads(bucket_policy("arn:aws:s3:::b", "etcd", ["arn:aws:iam::123456789012:role/m"], None,
                                        "arn:aws:kms:eu-west-2:123456789012:key/k"))
    for principal in ("arn:aws:iam::123456789012:role/m", ADMIN, BREAK_GLASS):
        request = Request(Principal.of(principal), "s3:DeleteObjectVersion", "arn:aws:s3:::b/etcd/x.db", TLS)
        assert refused_by(request, document) == ["RefuseRemoval"]


def test_only_members_and_the_break_glass_role_read_snapshots(governed):
    for principal in [*member_role_arns(governed), BREAK_GLASS]:
        assert refusals(governed, principal, "s3:GetObject", SNAPSHOT) == []
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert refusals(governed, ADMIN, action, SNAPSHOT) == ["RefuseReadsButMembers"]
        assert refusals(governed, "arn:aws:iam::210987654321:role/elsewhere", action, SNAPSHOT) == [
            "RefuseReadsButMembers"]


def test_plain_http_is_refused(governed):
    member = member_role_arns(governed)[0]
    assert "RefusePlainHttp" in refusals(governed, member, "s3:GetObject", SNAPSHOT, **{"aws:SecureTransport": "false"})
    assert refusals(governed, member, "s3:GetObject", SNAPSHOT) == []


def test_replaced_snapshots_stay_recoverable_for_a_whole_retention(governed):
    (rule,) = only(governed, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert rule["filter"] == {"prefix": "etcd/"}
    assert rule["expiration"] == {"days": 21}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 21}
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}


@pytest.mark.parametrize(("action", "key", "expected"), [
    ("s3:PutObject", SNAPSHOT, True), ("s3:AbortMultipartUpload", SNAPSHOT, True), ("s3:GetObject", SNAPSHOT, True),
    ("s3:PutObject", "etcd-evil/x.db", False), ("s3:PutObject", "stack-created", False),
    ("s3:DeleteObject", SNAPSHOT, False), ("s3:DeleteObjectVersion", SNAPSHOT, False),
    ("s3:PutObjectRetention", SNAPSHOT, False), ("s3:BypassGovernanceRetention", SNAPSHOT, False),
])
def test_members_write_and_read_only_under_the_cluster_prefix_and_never_delete(governed, action, key, expected):
    for index in range(3):
        role = governed.named(f"etcd-access-{index}", "aws:iam/role:Role")
        grant = governed.named(f"etcd-backup-write-{index}", "aws:iam/rolePolicy:RolePolicy")
        assert grant.inputs["role"] == role.id
        member = Principal.of(role.state["arn"], json.loads(grant.inputs["policy"]))
        assert allowed(Request(member, action, f"{bucket_arn(governed)}/{key}", TLS)) is expected


def test_the_bucket_is_private_and_owner_enforced(governed):
    block = only(governed, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets"))
    assert only(governed, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    assert only(governed, "aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"] == {
        "status": "Enabled"}


# --- teardown -------------------------------------------------------------------------------------

BUCKET_SETTINGS = ("aws:s3/bucketPolicy:BucketPolicy",
                   "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                   "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                   "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")


def test_destroy_keeps_the_bucket_its_snapshots_and_their_protection_by_default(governed):
    bucket = only(governed, BUCKET)
    assert bucket.retain_on_delete and not bucket.inputs.get("forceDestroy")
    for typ in BUCKET_SETTINGS:
        assert only(governed, typ).retain_on_delete, typ


def test_backups_on_destroy_delete_empties_and_deletes_the_bucket(policy_only):
    bucket = only(policy_only, BUCKET)
    assert bucket.inputs["forceDestroy"] is True and not bucket.retain_on_delete
    assert not only(policy_only, "aws:s3/bucketPolicy:BucketPolicy").retain_on_delete
    # Deleting it would suspend versioning, which an Object Lock bucket refuses: left to go with the bucket.
    assert only(policy_only, "aws:s3/bucketVersioning:BucketVersioning").retain_on_delete


def test_snapshots_under_compliance_mode_cannot_be_set_to_go_on_destroy(raw_config):
    from etcd_stack import config

    with pytest.raises(ConfigError, match=r"^etcd:backupsOnDestroy: 'delete' is not allowed: 'keep' with "
                                          r"etcd:backupLock 'compliance'"):
        config.load(raw_config(backupLock="compliance", backupsOnDestroy="delete"), "test")


# --- what arrives in the bucket -------------------------------------------------------------------

def test_every_object_created_in_the_bucket_is_recorded_by_eventbridge(governed):
    bucket = only(governed, BUCKET)
    assert only(governed, "aws:s3/bucketNotification:BucketNotification").inputs["eventbridge"] is True
    rule = only(governed, "aws:cloudwatch/eventRule:EventRule")
    assert json.loads(rule.inputs["eventPattern"]) == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                                                       "detail": {"bucket": {"name": [bucket.state["bucket"]]}}}
    assert rule.inputs["name"] == "test-etcd-snapshots"
    target = only(governed, "aws:cloudwatch/eventTarget:EventTarget")
    log_group = governed.named("etcd-backup-arrivals", "aws:cloudwatch/logGroup:LogGroup")
    assert (target.inputs["rule"], target.inputs["arn"]) == (rule.state["name"], log_group.state["arn"])
    assert log_group.inputs["retentionInDays"] == 30
    log_policy = governed.named("etcd-backup-arrivals", "aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    (grant,) = json.loads(log_policy.inputs["policyDocument"])["Statement"]
    assert grant["Principal"] == {"Service": "events.amazonaws.com"}
    assert grant["Resource"] == f"{log_group.state['arn']}:*"
    assert grant["Condition"] == {"ArnEquals": {"aws:SourceArn": rule.state["arn"]}}


def test_the_stack_writes_its_first_arrival_once_the_record_exists(governed):
    marker = only(governed, "aws:s3/bucketObjectv2:BucketObjectv2")
    assert marker.inputs["key"] == "stack-created"
    assert {"etcd-backup", "etcd-backup-arrivals"} <= set(marker.dependencies)
    assert marker.retain_on_delete


@pytest.mark.parametrize(("days", "kept"), [(1, 1), (14, 14), (21, 30), (400, 400), (3650, 3653)])
def test_the_arrival_record_is_kept_at_least_as_long_as_the_snapshots(days, kept):
    assert log_retention_days(days) == kept

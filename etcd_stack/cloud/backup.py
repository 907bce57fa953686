"""Where snapshots go: a private, versioned S3 bucket, encrypted with the stack's KMS key, where no
snapshot can be replaced or removed within the retention (Object Lock, or bucket-policy denies), that
only the members and a break-glass role can read; and the record of what arrives in it (EventBridge),
which the backup-age alarm counts, so no member can feed that alarm by publishing a metric.

`pulumi destroy` keeps the bucket and every snapshot unless etcd:backupsOnDestroy is `delete`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.iam import policy
from etcd_stack.config import FLOW_LOG_RETENTION_DAYS, BackupLock, BackupsOnDestroy
from etcd_stack.naming import parameter_name, scoped_name
from etcd_stack.tags import tagged

# Written by the stack itself once the arrival record exists: the first "arrival", so a new stack's
# backup-age alarm starts from its creation and fires only when the first snapshot is overdue.
CREATED_MARKER = "stack-created"
# EventBridge's count of events matching a rule: one per object created in the bucket.
ARRIVAL_NAMESPACE, ARRIVAL_METRIC = "AWS/Events", "TriggeredRules"
READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
REMOVE_ACTIONS = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                  "s3:PutObjectRetention"]


@dataclass(frozen=True)
class BackupArgs:
    cluster_name: str
    stack: str
    retention_days: int
    lock: BackupLock
    on_destroy: BackupsOnDestroy
    roles: Sequence[aws.iam.Role]
    tags: Mapping[str, str]
    # The stack's KMS key (keys.StackKey), whose policy lets the members and the break-glass role use it through S3.
    kms_key_arn: pulumi.Input[str]
    break_glass_role_arn: str | None = None
    # The etcd release tarball the members install (cloud/release.py), under RELEASE_PREFIX: each member may read it.
    release_key: str | None = None


def destination(bucket: str, cluster_name: str) -> str:
    return f"s3://{bucket}/{cluster_name}"


def log_retention_days(days: int) -> int:
    """The shortest retention CloudWatch Logs accepts that keeps a record as long as the snapshot."""
    return next((allowed for allowed in FLOW_LOG_RETENTION_DAYS if allowed >= days), FLOW_LOG_RETENTION_DAYS[-1])


def bucket_policy(bucket_arn: str, prefix: str, reader_arns: Sequence[str], break_glass_role_arn: str | None,
                  kms_key_arn: str) -> str:
    """Denies that hold for every principal of every account, the account root and admins included."""
    snapshots = f"{bucket_arn}/{prefix}/*"
    # An upload without encryption headers takes the bucket's default (the stack's key); headers would override
    # it (AWS knowledge center, s3-aws-kms-default-encryption), so one that names another algorithm or key (or
    # aws:kms without a key, which S3 takes as aws/s3: S3 API reference, CreateMultipartUpload) is refused.
    # The key id is of type ARN (service authorization reference, Amazon S3 condition keys).
    asks_for_encryption = {"Null": {"s3:x-amz-server-side-encryption": "false"}}
    keepers = [break_glass_role_arn] if break_glass_role_arn else []
    statements: list[Mapping[str, Any]] = [
        {"Sid": "RefusePlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        # PutObject and CompleteMultipartUpload must carry If-None-Match; the other multipart steps cannot.
        {"Sid": "RefuseOverwrites", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": snapshots,
         "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}},
        {"Sid": "RefuseOtherEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {**asks_for_encryption, "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
        {"Sid": "RefuseOtherKeys", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {**asks_for_encryption,
                       "ArnNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn}}},
        # SSE-C: S3 would keep the snapshot under a key only the uploader holds (S3 user guide,
        # ServerSideEncryptionCustomerKeys).
        {"Sid": "RefuseCustomerKeys", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}},
        {"Sid": "RefuseRemoval", "Effect": "Deny", "Principal": "*", "Action": REMOVE_ACTIONS, "Resource": snapshots,
         **({"Condition": {"ArnNotEquals": {"aws:PrincipalArn": keepers}}} if keepers else {})},
        {"Sid": "RefuseReadsButMembers", "Effect": "Deny", "Principal": "*", "Action": READ_ACTIONS,
         "Resource": snapshots,
         "Condition": {"ArnNotEquals": {"aws:PrincipalArn": sorted(reader_arns) + keepers}}},
    ]
    return policy(*statements)


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    arrival_rule_name: pulumi.Output[str]
    created_marker: aws.s3.BucketObjectv2

    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:backup:BackupBucket", name, None, opts)
        keep = args.on_destroy is BackupsOnDestroy.KEEP
        # Kept on destroy: the bucket and what protects it stay as they are, snapshots included.
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=keep)
        locked = args.lock is not BackupLock.POLICY
        bucket = aws.s3.Bucket(
            name,
            # Deletes every version, bypassing governance retention; config refuses it with compliance.
            force_destroy=not keep,
            tags=tagged(args.tags, name), opts=child,
        )
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
                                       opts=child)
        aws.s3.BucketPublicAccessBlock(
            name, bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True,
            restrict_public_buckets=True, opts=child,
        )
        # Deleting it would suspend versioning, which S3 refuses on an Object Lock bucket: always left alone.
        versioning = aws.s3.BucketVersioning(
            name, bucket=bucket.id, versioning_configuration={"status": "Enabled"},
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        if locked:
            # Enabled on the versioned bucket, not at its creation: moving from `policy` to a lock mode
            # then changes the bucket in place instead of replacing it (and its snapshots).
            aws.s3.BucketObjectLockConfiguration(
                name, bucket=bucket.id, object_lock_enabled="Enabled",
                rule={"default_retention": {"mode": args.lock.value.upper(), "days": args.retention_days}},
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])),
            )
        # SSE-KMS under the stack's key, with an S3 Bucket Key: S3 then asks KMS for a bucket-level key instead
        # of one data key per object, which cuts KMS requests and their cost (S3 user guide, bucket-key).
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            name, bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": args.kms_key_arn},
                    "bucket_key_enabled": True}],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            name, bucket=bucket.id,
            rules=[{
                "id": "expire-old-snapshots",
                "status": "Enabled",
                "filter": {"prefix": f"{args.cluster_name}/"},
                "expiration": {"days": args.retention_days},
                # A replaced or expired snapshot stays recoverable for a whole retention more.
                "noncurrent_version_expiration": {"noncurrent_days": args.retention_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
            }],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        bucket_policy_resource = aws.s3.BucketPolicy(
            name, bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, args.kms_key_arn, *[role.arn for role in args.roles]).apply(
                lambda arns: bucket_policy(arns[0], args.cluster_name, arns[2:], args.break_glass_role_arn, arns[1])),
            opts=child,
        )
        for index, role in enumerate(args.roles):
            aws.iam.RolePolicy(
                f"{name}-write-{index}",
                role=role.id,
                policy=bucket.arn.apply(lambda arn: self._member_grant(arn, args.cluster_name, args.release_key)),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.arrival_rule_name = self._arrivals(name, bucket, args, child, [bucket_policy_resource, encryption])
        self.bucket_name, self.bucket_arn = bucket.bucket, bucket.arn
        # What a writer into the bucket waits for: the stack's key as default encryption, and the policy.
        self.ready: list[pulumi.Resource] = [encryption, bucket_policy_resource]
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn,
                               "arrival_rule_name": self.arrival_rule_name})

    @staticmethod
    def _member_grant(bucket_arn: str, prefix: str, release_key: str | None = None) -> str:
        # No KMS statement: the key policy grants the members the key through S3 for this bucket, directly.
        statements: list[Mapping[str, Any]] = [
            # New snapshots (multipart, abortable); reading them back for a restore (etcd-restore).
            {"Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"],
             "Resource": f"{bucket_arn}/{prefix}/*"},
            # List the cluster's own snapshots, for `etcd-stack snapshots` and `restore` (etcd-snapshots).
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": f"{prefix}/*"}}},
        ]
        if release_key:
            # The etcd release the bootstrap installs: that one object, read only.
            statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{release_key}"})
        return policy(*statements)

    def _arrivals(self, name: str, bucket: aws.s3.Bucket, args: BackupArgs, child: pulumi.ResourceOptions,
                  after: Sequence[pulumi.Resource]) -> pulumi.Output[str]:
        """Every object created in the bucket, as S3 reports it to EventBridge, kept in a log group (the
        record of who uploaded what) and counted by the rule's TriggeredRules metric."""
        owned = pulumi.ResourceOptions(parent=self)
        notification = aws.s3.BucketNotification(name, bucket=bucket.id, eventbridge=True, opts=child)
        rule = aws.cloudwatch.EventRule(
            f"{name}-arrivals",
            name=scoped_name(args.stack, args.cluster_name, "snapshots", limit=64),
            description=f"Objects created in the backup bucket of etcd cluster {args.cluster_name} ({args.stack})",
            event_pattern=bucket.bucket.apply(lambda bucket_name: json.dumps({
                "source": ["aws.s3"], "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [bucket_name]}},
            }, sort_keys=True)),
            tags=tagged(args.tags, f"{name}-arrivals"),
            opts=owned,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-arrivals",
            name=parameter_name(args.stack, args.cluster_name, "snapshots"),
            retention_in_days=log_retention_days(args.retention_days),
            tags=tagged(args.tags, f"{name}-arrivals"),
            opts=owned,
        )
        log_policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-arrivals",
            policy_name=scoped_name(args.stack, args.cluster_name, "snapshots", limit=255),
            policy_document=pulumi.Output.all(log_group.arn, rule.arn).apply(lambda arns: policy({
                "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": f"{arns[0]}:*",
                "Condition": {"ArnEquals": {"aws:SourceArn": arns[1]}},
            })),
            opts=owned,
        )
        target = aws.cloudwatch.EventTarget(
            f"{name}-arrivals", rule=rule.name, arn=log_group.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_policy]),
        )
        self.created_marker = aws.s3.BucketObjectv2(
            f"{name}-created", bucket=bucket.id, key=CREATED_MARKER,
            content=f"etcd cluster {args.cluster_name} of stack {args.stack}\n",
            # S3 takes an object into an Object Lock bucket only with a checksum of it.
            checksum_algorithm="SHA256",
            tags=tagged(args.tags, f"{name}-created"),
            # Locked like every object; it goes with the bucket (force_destroy) or stays with it.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True,
                                        depends_on=[notification, target, *after]),
        )
        return rule.name

"""Where snapshots go: a private, versioned, encrypted S3 bucket that refuses plain HTTP and forgets
old snapshots, and per member the right to write under the cluster's prefix and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.iam import policy
from etcd_stack.tags import tagged

METRIC_NAMESPACE = "etcd-aws"
SNAPSHOT_METRIC = "SnapshotsUploaded"


@dataclass(frozen=True)
class BackupArgs:
    cluster_name: str
    retention_days: int
    roles: Sequence[aws.iam.Role]
    tags: Mapping[str, str]


def destination(bucket: str, cluster_name: str) -> str:
    return f"s3://{bucket}/{cluster_name}"


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:backup:BackupBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, tags=tagged(args.tags, name), opts=child)
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
                                       opts=child)
        aws.s3.BucketPublicAccessBlock(
            name, bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True,
            restrict_public_buckets=True, opts=child,
        )
        aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            name, bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            name, bucket=bucket.id,
            rules=[{
                "id": "expire-old-snapshots",
                "status": "Enabled",
                "filter": {"prefix": f"{args.cluster_name}/"},
                "expiration": {"days": args.retention_days},
                "noncurrent_version_expiration": {"noncurrent_days": 1},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
            }],
            opts=child,
        )
        aws.s3.BucketPolicy(
            name, bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: policy({
                "Sid": "RefusePlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            })),
            opts=child,
        )
        for index, role in enumerate(args.roles):
            aws.iam.RolePolicy(
                f"{name}-write-{index}",
                role=role.id,
                policy=bucket.arn.apply(lambda arn: policy(
                    # Write new snapshots; read them back for a restore (etcd-restore).
                    {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
                     "Resource": f"{arn}/{args.cluster_name}/*"},
                    # List the cluster's own snapshots, for `etcd-stack snapshots` and `restore` (etcd-snapshots).
                    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn,
                     "Condition": {"StringLike": {"s3:prefix": f"{args.cluster_name}/*"}}},
                    {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                     "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}},
                )),
                opts=child,
            )
        self.bucket_name = bucket.bucket
        self.register_outputs({"bucket_name": self.bucket_name})

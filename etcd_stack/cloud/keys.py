"""The stack's own KMS key: what encrypts the members' keys, certificates and the CA bundle in SSM, and
the snapshots in the backup bucket.

Not the account's aws/ssm key: AWS documents that it lets every principal of the account decrypt
(Systems Manager user guide, ps-restrict-decryption). This key's policy decides alone who decrypts:
the account administers it but cannot decrypt, the deployer uses it through SSM for the cluster's
parameters, each member decrypts, through SSM only, its own parameters and the CA bundle, and, through
S3 only and for the backup bucket only, the members write and read snapshots and the break-glass role
reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud import iam
from etcd_stack.tags import tagged

# Managing the key, never using it: no Decrypt, Encrypt, ReEncrypt, GenerateDataKey, and no CreateGrant
# (a grant would hand out decrypt without the key policy). PutKeyPolicy keeps the key manageable
# (KMS refuses a policy that locks the account out: the lockout safety check).
ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey",
    "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListKeyRotations",
    "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:RevokeGrant", "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
DELETION_WINDOW_DAYS = 30
# SSM encrypts a SecureString with this context (KMS developer guide, "Parameter Store encryption context").
PARAMETER_CONTEXT = "kms:EncryptionContext:PARAMETER_ARN"
# S3 encrypts with this context; with an S3 Bucket Key its value is the bucket's ARN, not the object's
# (S3 user guide, configuring-bucket-key).
BUCKET_CONTEXT = "kms:EncryptionContext:aws:s3:arn"
# A multipart upload needs GenerateDataKey to start and Decrypt for its parts (S3 API reference,
# CreateMultipartUpload, Permissions); reading an object back needs Decrypt.
WRITE_THROUGH_S3 = ["kms:Decrypt", "kms:GenerateDataKey"]


@dataclass(frozen=True)
class Reader:
    """A principal that decrypts, through SSM, exactly these parameters."""

    role_arn: pulumi.Input[str]
    parameters: Sequence[str]


@dataclass(frozen=True)
class BucketUsers:
    """Who uses the key through S3 for one bucket: writers upload and read back, readers only read."""

    bucket_arn: pulumi.Input[str]
    writers: Sequence[pulumi.Input[str]]
    readers: Sequence[pulumi.Input[str]] = ()


@dataclass(frozen=True)
class StackKeyArgs:
    alias: str
    region: str
    account: str
    deployer_arn: str
    parameter_root: str
    readers: Sequence[Reader]
    backups: BucketUsers
    tags: Mapping[str, str]


def deployer() -> tuple[str, str]:
    """The account and the principal ARN (a role's ARN for an assumed role) of whoever runs the program."""
    caller = aws.get_caller_identity()
    # aws:PrincipalArn is the role's ARN for a role session, not the session's STS ARN (IAM user guide,
    # global condition context keys); getSessionContext gives the issuer (with its path, which costs the
    # deployer iam:GetRole on its own role: hashicorp/terraform-provider-aws#19957), a user's ARN unchanged.
    return caller.account_id, aws.iam.get_session_context(arn=caller.arn).issuer_arn


def key_policy(region: str, account: str, deployer_arn: str, parameter_root: str,
               readers: Sequence[tuple[str, Sequence[str]]], backups: BucketUsers) -> str:
    """The key policy; `readers` pairs a role ARN with the parameter names that role may decrypt, `backups`
    (ARNs resolved) names the backup bucket and who writes and reads its snapshots."""
    through_ssm = {"kms:CallerAccount": account, "kms:ViaService": f"ssm.{region}.amazonaws.com"}
    # No kms:CallerAccount: the break-glass role may live in another account (which must grant it too).
    through_s3 = {"kms:ViaService": f"s3.{region}.amazonaws.com", BUCKET_CONTEXT: backups.bucket_arn}
    # Principal "*" narrowed by aws:PrincipalArn: a recreated role keeps working (a named principal would
    # be bound to the old role's unique id).
    statements = [
        {"Sid": "AccountAdministersButNeverDecrypts", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": list(ADMIN_ACTIONS), "Resource": "*"},
        {"Sid": "DeployerWritesAndReadsTheClusterParameters", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {
             "StringEquals": {"aws:PrincipalArn": deployer_arn, **through_ssm},
             "StringLike": {PARAMETER_CONTEXT: iam.parameter_arn(region, account, f"{parameter_root}/*")},
         }},
    ]
    for index, (role_arn, parameters) in enumerate(readers):
        statements.append({
            "Sid": f"Member{index}DecryptsItsOwnParameters", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {
                "aws:PrincipalArn": role_arn, **through_ssm,
                PARAMETER_CONTEXT: sorted(iam.parameter_arn(region, account, name) for name in parameters),
            }},
        })
    # The deployer writes the stack's marker object; the bucket policy keeps it off the snapshots.
    for sid, principals, actions in (("MembersWriteAndReadSnapshotsThroughS3", backups.writers, WRITE_THROUGH_S3),
                                     ("DeployerWritesTheBucketMarkerThroughS3", [deployer_arn], WRITE_THROUGH_S3),
                                     ("BreakGlassReadsSnapshotsThroughS3", backups.readers, ["kms:Decrypt"])):
        if principals:
            statements.append({
                "Sid": sid, "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": actions, "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalArn": sorted(principals), **through_s3}},
            })
    return iam.policy(*statements)


class StackKey(pulumi.ComponentResource):
    key: aws.kms.Key
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:keys:StackKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role_arns = pulumi.Output.all(*[reader.role_arn for reader in args.readers])
        backups = pulumi.Output.all(args.backups.bucket_arn, pulumi.Output.all(*args.backups.writers),
                                    pulumi.Output.all(*args.backups.readers)).apply(lambda v: BucketUsers(*v))
        self.key = aws.kms.Key(
            name,
            description=f"etcd TLS keys, certificates and CA bundle under SSM {args.parameter_root}, and snapshots",
            enable_key_rotation=True,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=pulumi.Output.all(role_arns, backups).apply(lambda values: key_policy(
                args.region, args.account, args.deployer_arn, args.parameter_root,
                [(arn, reader.parameters) for arn, reader in zip(values[0], args.readers, strict=True)], values[1],
            )),
            tags=tagged(args.tags, name),
            opts=child,
        )
        # Alias names are unique per account and region: the alias carries the stack.
        aws.kms.Alias(name, name=args.alias, target_key_id=self.key.key_id, opts=child)
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})

"""The backup and restore scripts against a local S3 (moto's server on 127.0.0.1), driven by the AWS
CLI's s3api commands (generated from the same service model as the CLI v2 on the instances): snapshots
go up in parts into a bucket encrypted by default with a KMS key (as the stack's is, with a Bucket Key),
never replace an existing key, carry their SHA-256, and restore refuses one that does not match it.
etcd's tools are stubs here; the sandbox tests run the real ones."""

from __future__ import annotations

import getpass
import hashlib
import subprocess
from pathlib import Path

import boto3
import pytest

from etcd_stack.config import Bootstrap, EtcdVersion
from etcd_stack.member import rendering
from etcd_stack.member.rendering import BackupSettings, ClusterSettings
from etcd_stack.sandbox.local import local_members, local_paths
from tests.local_aws import CREDENTIALS, REGION, aws_endpoint, cli_environment

__all__ = ["aws_endpoint"]

BUCKET, STAMP = "etcd-backup-test", "20261121T103950Z"
KEY = f"etcd/{STAMP}-etcd-0.db"
# Five 1 MiB parts and a short one: moto, like S3, refuses parts under 5 MiB except the last.
PART_MIB, SNAPSHOT_BYTES = 5, 11 * 1024 * 1024 + 123
STUBS = {
    "etcdctl": """
case "$*" in
  *"endpoint status"*) printf '"MemberID" : 42\\n"Leader" : 42\\n' ;;
  *"snapshot save"*) for last; do :; done; head -c "$SNAPSHOT_BYTES" /dev/urandom >"$last" ;;
  *) exit 3 ;;
esac
""",
    "etcdutl": """
case "$1 $2" in
  "snapshot status") echo '{}' ;;
  "snapshot restore") for last; do :; done; mkdir -p "$last/member" ;;
  *) exit 3 ;;
esac
""",
}
HOST_STUBS = {"date": f"echo {STAMP}", "curl": "exit 7", "chown": "true"}


def stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/bash\n{body.strip()}\n")
    path.chmod(0o755)


class Member:
    def __init__(self, root: Path, endpoint: str):
        self.member = local_members(1)[0]
        self.paths = local_paths(root, self.member)
        cluster = ClusterSettings(
            name="etcd", token="etcd-test", version=EtcdVersion(3, 6, 14), bootstrap=Bootstrap.STATIC,
            members=(self.member,), heartbeat_ms=100, election_ms=1000, quota_backend_bytes=1,
            backup=BackupSettings(f"s3://{BUCKET}/etcd", 60, REGION, part_mib=PART_MIB))
        for file in rendering.day2_scripts(cluster, self.member, self.paths, etcd_user=getpass.getuser()):
            Path(file.path).parent.mkdir(parents=True, exist_ok=True)
            Path(file.path).write_text(file.content)
        for name, body in STUBS.items():
            stub(Path(self.paths.bin_dir) / name, body)
        for name, body in HOST_STUBS.items():
            stub(root / "host-stubs" / name, body)
        self.env = {**cli_environment(endpoint, root, root / "host-stubs"), "SNAPSHOT_BYTES": str(SNAPSHOT_BYTES)}

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", self.paths.script(script), *args], capture_output=True, text=True,
                              env=self.env, timeout=120, check=False)


@pytest.fixture(scope="module")
def key_arn(aws_endpoint) -> str:
    kms = boto3.client("kms", endpoint_url=aws_endpoint, region_name=REGION, **CREDENTIALS)
    return kms.create_key(Description="the stack's key")["KeyMetadata"]["Arn"]


@pytest.fixture
def s3(aws_endpoint, key_arn):
    client = boto3.client("s3", endpoint_url=aws_endpoint, region_name=REGION, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    # The bucket's default encryption, as the stack sets it: the upload sends no encryption header of its own.
    client.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True}]})
    yield client
    for version in client.list_object_versions(Bucket=BUCKET).get("Versions", []):
        client.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def member(tmp_path, aws_endpoint) -> Member:
    return Member(tmp_path, aws_endpoint)


def test_a_snapshot_goes_up_in_parts_with_its_sha256_under_the_buckets_key(member, s3, key_arn):
    result = member.run("etcd-backup")
    assert result.returncode == 0, result.stderr
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["BucketKeyEnabled"]) == ("aws:kms", key_arn, True)
    body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert len(body) == SNAPSHOT_BYTES
    assert head["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}
    # A multipart object's ETag ends with its number of parts.
    assert head["ETag"].strip('"').endswith("-3")
    assert Path(member.paths.backup_state_dir, "last-success").read_text().split() == [STAMP, f"s3://{BUCKET}/{KEY}"]


def test_an_upload_never_replaces_an_existing_snapshot(member, s3):
    assert member.run("etcd-backup").returncode == 0
    first = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    # The same name again (the clock stub repeats itself): S3 refuses the completion, the parts are dropped.
    again = member.run("etcd-backup")
    assert again.returncode != 0
    assert f"s3://{BUCKET}/{KEY} was not written" in again.stderr
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == first
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 1
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_restore_takes_a_snapshot_whose_sha256_matches(member, s3):
    assert member.run("etcd-backup").returncode == 0
    result = member.run("etcd-restore", f"s3://{BUCKET}/{KEY}", "etcd-new")
    assert result.returncode == 0, result.stderr
    assert Path(member.paths.data_dir, "member").is_dir()


@pytest.mark.parametrize(("metadata", "refusal"), [
    ("copied", "does not match its SHA-256"),
    (None, "carries no SHA-256"),
])
def test_restore_refuses_a_snapshot_that_does_not_match_its_recorded_sha256(member, s3, metadata, refusal):
    assert member.run("etcd-backup").returncode == 0
    recorded = s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"]
    poisoned = b"not the snapshot the leader took" * 1000
    s3.put_object(Bucket=BUCKET, Key="etcd/poisoned.db", Body=poisoned,
                  Metadata=recorded if metadata == "copied" else {})
    result = member.run("etcd-restore", f"s3://{BUCKET}/etcd/poisoned.db", "etcd-new")
    assert result.returncode != 0
    assert refusal in result.stderr
    assert not Path(member.paths.data_dir).exists()

"""The release provider (cloud/release.py) against moto's S3: it checks the tarball before uploading it, and a
second deployer's `pulumi up` (same inputs) replaces nothing."""

from __future__ import annotations

import base64
import hashlib
import pickle

import boto3
import pytest
from moto import mock_aws

from etcd_stack.cloud import release
from etcd_stack.cloud.release import ReleaseProvider, ReleaseRefused, release_key, tarball_name

REGION = "eu-west-2"
BUCKET = "etcd-backup-0a1b2c"
TARBALL = b"a release tarball\n" * 1000
SUM = hashlib.sha256(TARBALL).hexdigest()


@pytest.fixture
def s3(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tarball_name("3.6.16", "amd64")).write_bytes(TARBALL)
    monkeypatch.setenv(release.CACHE_ENV, str(cache))
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def props(sha256: str = SUM, version: str = "3.6.16") -> dict[str, str]:
    return {"bucket": BUCKET, "key": release_key(version, "amd64"), "version": version, "arch": "amd64",
            "sha256": sha256, "url": f"https://release.invalid/{tarball_name(version, 'amd64')}"}


def test_create_uploads_the_checked_tarball_with_its_checksum(s3):
    created = ReleaseProvider().create(props())
    assert created.id == f"{BUCKET}/_releases/etcd-v3.6.16-linux-amd64.tar.gz"
    got = s3.get_object(Bucket=BUCKET, Key=release_key("3.6.16", "amd64"), ChecksumMode="ENABLED")
    assert got["Body"].read() == TARBALL
    # moto 5.2.5 does not answer ChecksumSHA256 back; S3 does (HeadObject/GetObject with ChecksumMode).
    assert got.get("ChecksumSHA256", base64.b64encode(bytes.fromhex(SUM)).decode()) == base64.b64encode(
        bytes.fromhex(SUM)).decode()
    assert got["Metadata"] == {"sha256": SUM}
    assert created.outs["versionId"] == got["VersionId"]


def test_a_wrong_checksum_uploads_nothing(s3):
    with pytest.raises(ReleaseRefused, match=f"expected {'0' * 64}: not uploaded"):
        ReleaseProvider().create(props(sha256="0" * 64))
    assert s3.list_object_versions(Bucket=BUCKET).get("Versions", []) == []


def test_a_download_is_checked_too(s3, monkeypatch):
    monkeypatch.delenv(release.CACHE_ENV)
    monkeypatch.setattr(release, "_fetch", lambda p, work: (work / "t").write_bytes(b"tampered") and work / "t")
    with pytest.raises(ReleaseRefused):
        ReleaseProvider().create(props())
    assert s3.list_object_versions(Bucket=BUCKET).get("Versions", []) == []


def test_the_same_inputs_change_nothing_and_any_input_replaces(s3):
    provider = ReleaseProvider()
    outs = provider.create(props()).outs
    same = provider.diff("id", outs, props())
    assert (same.changes, same.replaces) == (False, [])
    newer = provider.diff("id", outs, props(version="3.6.17"))
    assert newer.changes and set(newer.replaces) == {"key", "version", "url"}
    assert provider.diff("id", outs, props(sha256="1" * 64)).replaces == ["sha256"]


def test_read_keeps_the_object_while_it_holds_the_recorded_sum(s3):
    provider = ReleaseProvider()
    created = provider.create(props())
    assert provider.read(created.id, created.outs).id == created.id
    s3.put_object(Bucket=BUCKET, Key=release_key("3.6.16", "amd64"), Body=b"other",
                  ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
                  Metadata={"sha256": hashlib.sha256(b"other").hexdigest()})
    assert provider.read(created.id, created.outs).id is None


def test_read_of_a_missing_object_says_it_is_gone(s3):
    assert ReleaseProvider().read("x", {**props(), "versionId": ""}).id is None


def test_delete_removes_only_the_version_it_created(s3):
    provider = ReleaseProvider()
    old = provider.create(props()).outs
    newer = provider.create(props()).outs  # a replacement under the same key (another sum of a user's build)
    provider.delete("id", old)
    versions = [v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET)["Versions"]]
    assert versions == [newer["versionId"]]
    assert s3.get_object(Bucket=BUCKET, Key=old["key"])["Body"].read() == TARBALL


def test_the_provider_pickles_without_clients():
    assert isinstance(pickle.loads(pickle.dumps(ReleaseProvider())), ReleaseProvider)

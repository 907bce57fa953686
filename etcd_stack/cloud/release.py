"""The etcd release the members install, put into the stack's backup bucket by the deployer, so a member boots
without the internet (DESIGN.md, decision 7).

The backup bucket, not one of its own: it is already private, versioned and encrypted by default with the stack's
key (an upload without encryption headers takes it), and its denies on overwrite, removal and reads name only the
snapshots' prefix. The key's prefix `_releases/` cannot be a cluster's (cluster names have no underscore), so the
snapshots' lifecycle never expires the release. With Object Lock every new version is retained like a snapshot:
delete removes the exact version it created, and S3 refuses that until the retention ends; the version then stays,
harmless (a later delete marker is not written, so a replacement under the same key stays readable).

The provider's inputs are only (bucket, key, version, arch, sha256, url): a second deployer machine running
`pulumi up` finds nothing changed. No client lives at module level: pulumi pickles the provider per resource.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider

from etcd_stack import releases

PREFIX = "_releases"
# A directory the deployer fills with release tarballs (named as etcd names them) when it cannot reach GitHub.
CACHE_ENV = "ETCD_STACK_RELEASE_CACHE"
INPUTS = ("bucket", "key", "version", "arch", "sha256", "url")
CHUNK = 1 << 20


def release_key(version: str, arch: str) -> str:
    return f"{PREFIX}/etcd-v{version}-linux-{arch}.tar.gz"


def tarball_name(version: str, arch: str) -> str:
    return f"etcd-v{version}-linux-{arch}.tar.gz"


class ReleaseRefused(Exception):
    """The tarball's SHA-256 is not the expected one: nothing was uploaded."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(props: dict[str, Any], work: Path) -> Path:
    """The tarball from the cache directory when it holds it, else downloaded from the release URL."""
    cache = os.environ.get(CACHE_ENV)
    if cache:
        cached = Path(cache) / tarball_name(props["version"], props["arch"])
        if cached.is_file():
            return cached
    import requests

    target = work / tarball_name(props["version"], props["arch"])
    with requests.get(props["url"], stream=True, timeout=60) as response:
        response.raise_for_status()
        with target.open("wb") as stream:
            for chunk in response.iter_content(CHUNK):
                stream.write(chunk)
    return target


def _s3(bucket: str) -> Any:
    """A client in the bucket's region (the stack's), made per call: nothing unpicklable on the provider."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    client = boto3.client("s3", region_name=region)
    located = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
    return client if located == client.meta.region_name else boto3.client("s3", region_name=located)


class ReleaseProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        with tempfile.TemporaryDirectory(prefix="etcd-release-") as work:
            tarball = _fetch(props, Path(work))
            actual = _sha256_file(tarball)
            if actual != props["sha256"]:
                raise ReleaseRefused(f"{props['url']}: SHA-256 {actual}, expected {props['sha256']}: not uploaded")
            checksum = base64.b64encode(bytes.fromhex(actual)).decode()
            with tarball.open("rb") as body:
                # No encryption headers: the bucket's default (the stack's key) applies, as for the snapshots.
                answer = _s3(props["bucket"]).put_object(Bucket=props["bucket"], Key=props["key"], Body=body,
                                                         ChecksumSHA256=checksum, Metadata={"sha256": actual})
        outs = {**{name: props[name] for name in INPUTS}, "versionId": answer.get("VersionId") or ""}
        return CreateResult(id_=f"{props['bucket']}/{props['key']}", outs=outs)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [name for name in INPUTS if olds.get(name) != news.get(name)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The object as S3 holds it: its outputs stay when its SHA-256 is the one recorded, and are cleared
        (so the next `pulumi up` uploads it again) when it is gone or holds something else."""
        client = _s3(props["bucket"])
        try:
            head = client.head_object(Bucket=props["bucket"], Key=props["key"], ChecksumMode="ENABLED")
        except client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return ReadResult(id_=None, outs={})
            raise
        recorded = base64.b64encode(bytes.fromhex(props["sha256"])).decode()
        # S3 answers the checksum it verified at upload; the metadata says the same where it does not (moto).
        if (head.get("ChecksumSHA256") or recorded) != recorded or head.get("Metadata", {}).get("sha256") != props[
                "sha256"]:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs={**props, "versionId": head.get("VersionId") or props.get("versionId", "")})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = _s3(props["bucket"])
        version = props.get("versionId")
        try:
            if version:
                client.delete_object(Bucket=props["bucket"], Key=props["key"], VersionId=version)
            else:
                client.delete_object(Bucket=props["bucket"], Key=props["key"])
        except client.exceptions.ClientError as error:
            # Object Lock retains the version until its retention ends (AccessDenied); a bucket already gone
            # (NoSuchBucket) holds nothing to delete.
            if error.response.get("Error", {}).get("Code") not in ("AccessDenied", "NoSuchBucket", "NoSuchKey",
                                                                    "NoSuchVersion"):
                raise


class EtcdRelease(pulumi.dynamic.Resource):
    """The release tarball of `version` for `arch` in `bucket`, checked against `sha256` before upload."""

    bucket: pulumi.Output[str]
    key: pulumi.Output[str]
    sha256: pulumi.Output[str]

    def __init__(self, name: str, bucket: pulumi.Input[str], version: str, arch: str, sha256: str,
                 opts: pulumi.ResourceOptions | None = None):
        props = {"bucket": bucket, "key": release_key(version, arch), "version": version, "arch": arch,
                 "sha256": sha256, "url": releases.download_url(version, arch)}
        super().__init__(ReleaseProvider(), name, props, opts)

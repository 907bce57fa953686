"""AWS's APIs for the machines: moto in server mode on one address of the world network, holding what the stack
put into AWS before any instance booted (its KMS keys, the members' SSM parameters, the backup bucket with its
versioning, Object Lock and default encryption, and the objects the program uploads).

Differences from AWS, named at the seam:
- one endpoint for every service (the machines find it through AWS_ENDPOINT_URL); on AWS each service has its
  regional endpoint, reached through the VPC's endpoints or NAT;
- moto checks no IAM policy, key policy or bucket policy: what a member may do is proven by the access
  evaluation tests (tests/cloud/test_effective_access.py), not here;
- moto makes its own KMS key ids: the stack's keys are created anew and every reference to them is mapped;
  SecureStrings are stored, not encrypted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from etcd_stack.sandbox import processes
from etcd_stack.sandbox.machines.network import World

ADDRESS = "192.0.2.10"
PORT = 5000
ENDPOINT = f"http://{ADDRESS}:{PORT}"
START_TIMEOUT_S = 30
# moto accepts any credentials; these are the deployer's (the test's), the instances get theirs from metadata.
DEPLOYER = {"aws_access_key_id": "deployer", "aws_secret_access_key": "deployer"}

Report = Callable[[str], None]


class AwsError(Exception):
    pass


@dataclass(frozen=True)
class Bucket:
    name: str
    versioning: bool = False
    # (mode, days) of the default retention, when Object Lock is on.
    object_lock: tuple[str, int] | None = None
    kms_key: str | None = None  # the stack's key ARN for default encryption
    objects: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    value: str
    kms_key: str | None = None


@dataclass(frozen=True)
class Seed:
    """What the stack made in AWS before its instances boot, as plain values (preview/machines.py reads it
    from the offline render)."""

    region: str
    keys: tuple[str, ...]  # the stack's KMS key ARNs
    buckets: tuple[Bucket, ...]
    parameters: tuple[Parameter, ...]


@dataclass(frozen=True)
class AwsServer:
    pid: int
    log: Path

    def stop(self) -> None:
        processes.stop_pid(self.pid)


def start(world: World, home: Path, report: Report = print) -> AwsServer:
    """moto's server on ADDRESS:PORT inside the world namespace; the address is added to the world first."""
    world.add_address(ADDRESS)
    log = home / "aws.log"
    pid = processes.spawn(["ip", "netns", "exec", world.name, sys.executable, "-m", "moto.server",
                           "--host", ADDRESS, "--port", str(PORT)], log)
    (home / "aws.pid").write_text(f"{pid}\n")
    server = AwsServer(pid, log)
    started = time.monotonic()
    while not world.call(lambda: processes.listening(ADDRESS, PORT)):
        if not processes.alive(pid) or time.monotonic() - started > START_TIMEOUT_S:
            server.stop()
            raise AwsError(f"moto's server did not start: {' | '.join(processes.tail(log))}")
        time.sleep(0.1)
    report(f"AWS stand-in (moto) on {ENDPOINT} in {time.monotonic() - started:.1f}s")
    return server


def client(service: str, region: str) -> Any:
    """A client of the stand-in; use it inside the world (World.call)."""
    return boto3.client(service, region_name=region, endpoint_url=ENDPOINT, config=Config(retries={"max_attempts": 2}),
                        **DEPLOYER)


def seed(world: World, plan: Seed) -> dict[str, str]:
    """Creates what `plan` lists; returns the stack's key ARNs mapped to moto's."""
    return world.call(lambda: _seed(plan))


def _seed(plan: Seed) -> dict[str, str]:
    kms, s3, ssm = (client(service, plan.region) for service in ("kms", "s3", "ssm"))
    keys = {arn: kms.create_key(Description=f"stands in for {arn}")["KeyMetadata"]["Arn"] for arn in plan.keys}
    for bucket in plan.buckets:
        s3.create_bucket(Bucket=bucket.name, CreateBucketConfiguration={"LocationConstraint": plan.region},
                         ObjectLockEnabledForBucket=bucket.object_lock is not None)
        if bucket.versioning:
            s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
        if bucket.object_lock:
            mode, days = bucket.object_lock
            s3.put_object_lock_configuration(Bucket=bucket.name, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}})
        if bucket.kms_key:
            s3.put_bucket_encryption(Bucket=bucket.name, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                       "KMSMasterKeyID": keys[bucket.kms_key]},
                "BucketKeyEnabled": True}]})
        for key, body in bucket.objects.items():
            s3.put_object(Bucket=bucket.name, Key=key, Body=body, ChecksumAlgorithm="SHA256")
    for parameter in plan.parameters:
        extra = {"KeyId": keys[parameter.kms_key]} if parameter.kms_key else {}
        ssm.put_parameter(Name=parameter.name, Type=parameter.type, Value=parameter.value, **extra)
    return keys


def put_object(world: World, region: str, bucket: str, key: str, body: bytes) -> None:
    """An object the deployer uploads (the etcd release), as the program's upload does."""
    world.call(lambda: client("s3", region).put_object(Bucket=bucket, Key=key, Body=body,
                                                       ChecksumAlgorithm="SHA256"))

"""What the machines need of a stack, read from its offline render: each member's interface (address, subnet),
the private zone's records, the data volume's size, each member's exact user_data (as EC2 gets it), and what
the program put into AWS before any instance boots (keys, parameters, the backup bucket and its objects)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

from etcd_stack.cloud.release import PREFIX as RELEASE_PREFIX
from etcd_stack.config import Bootstrap
from etcd_stack.preview.offline import OfflineRun, Registered
from etcd_stack.preview.wire import reveal
from etcd_stack.sandbox.machines import aws
from etcd_stack.sandbox.machines.balancer import BalancerPlan, Target
from etcd_stack.sandbox.machines.discovery import DiscoveryPlan, token_of
from etcd_stack.sandbox.machines.fleet import FleetPlan, MemberSpec

INSTANCE = "aws:ec2/instance:Instance"
INTERFACE = "aws:ec2/networkInterface:NetworkInterface"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
RECORD = "aws:route53/record:Record"
VOLUME = "aws:ebs/volume:Volume"
KEY = "aws:kms/key:Key"
PARAMETER = "aws:ssm/parameter:Parameter"
BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
DYNAMIC = "pulumi-python:dynamic:Resource"
BALANCER = "aws:lb/loadBalancer:LoadBalancer"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
MEMBER_TAG = "etcd-member"


def _member_of(resource: Registered) -> str | None:
    return (resource.inputs.get("tags") or {}).get(MEMBER_TAG)


def members(run: OfflineRun) -> tuple[MemberSpec, ...]:
    """Each member's interface as the program creates it, with the hostname EC2 gives its instance."""
    roles = {}
    for instance in run.of_type(INSTANCE):
        profile = next(p for p in run.of_type(PROFILE) if p.state.get("name") == instance.inputs["iamInstanceProfile"])
        roles[_member_of(instance)] = profile.inputs["role"]
    specs = []
    for interface in run.of_type(INTERFACE):
        name = _member_of(interface)
        if not name:
            continue
        (address,) = interface.inputs["privateIps"]
        subnet = run.by_id(interface.inputs["subnetId"])
        hostname = f"ip-{address.replace('.', '-')}.{run.config.region}.compute.internal"
        specs.append(MemberSpec(name=name, address=address, subnet=subnet.inputs["cidrBlock"], hostname=hostname,
                                availability_zone=subnet.inputs["availabilityZone"], role=roles[name]))
    return tuple(sorted(specs, key=lambda spec: int(spec.name.rsplit("-", 1)[1])))


def hosts(run: OfflineRun) -> dict[str, str]:
    """The private zone's A records, one address each (a name with several, the load balancer's, gets the first:
    Route 53 answers all of them in turn)."""
    return {record.inputs["name"]: record.inputs["records"][0] for record in run.of_type(RECORD)
            if record.inputs.get("type") == "A"}


def volume_gib(run: OfflineRun) -> int:
    sizes = {int(volume.inputs["size"]) for volume in run.of_type(VOLUME) if _member_of(volume)}
    (size,) = sizes
    return size


def user_data(run: OfflineRun) -> dict[str, bytes]:
    """Each member's user_data exactly as EC2 hands it to cloud-init (the gzip the program encoded)."""
    return {_member_of(instance): base64.b64decode(instance.inputs["userDataBase64"])
            for instance in run.of_type(INSTANCE) if _member_of(instance)}


def _of_bucket(run: OfflineRun, typ: str, bucket: str) -> Iterator[Registered]:
    return (resource for resource in run.of_type(typ) if resource.inputs.get("bucket") == bucket)


def _releases(run: OfflineRun, bucket: str, release: bytes | None) -> dict[str, bytes]:
    """The etcd release the program uploads (cloud/release.py) at the key the members fetch, as `release`."""
    uploads = [r for r in run.of_type(DYNAMIC) if r.inputs.get("bucket") == bucket
               and str(r.inputs.get("key", "")).startswith(f"{RELEASE_PREFIX}/")]
    if not uploads:
        return {}
    if release is None:
        raise ValueError(f"the stack uploads {uploads[0].inputs['key']} to {bucket}: give the tarball as `release`")
    return {upload.inputs["key"]: release for upload in uploads}


def _bucket(run: OfflineRun, resource: Registered, release: bytes | None) -> aws.Bucket:
    name = resource.id
    versioning = any(v.inputs["versioningConfiguration"]["status"] == "Enabled"
                     for v in _of_bucket(run, VERSIONING, name))
    lock = None
    for configuration in _of_bucket(run, OBJECT_LOCK, name):
        retention = configuration.inputs["rule"]["defaultRetention"]
        lock = (retention["mode"], int(retention["days"]))
    kms_key = None
    for configuration in _of_bucket(run, ENCRYPTION, name):
        for rule in configuration.inputs["rules"]:
            kms_key = rule["applyServerSideEncryptionByDefault"].get("kmsMasterKeyId") or kms_key
    objects = {o.inputs["key"]: reveal(o.inputs["content"]).encode() for o in _of_bucket(run, OBJECT, name)}
    objects.update(_releases(run, name, release))
    return aws.Bucket(name=name, versioning=versioning, object_lock=lock, kms_key=kms_key, objects=objects)


def parameters(run: OfflineRun) -> tuple[aws.Parameter, ...]:
    """The SSM parameters the program writes: the members' keys, certificates and CA bundle (SecureStrings)."""
    return tuple(aws.Parameter(name=p.inputs["name"], type=p.inputs["type"], value=reveal(p.inputs["value"]),
                               kms_key=p.inputs.get("keyId"))
                 for p in run.of_type(PARAMETER))


def seed(run: OfflineRun, release: bytes | None = None) -> aws.Seed:
    """The stack's KMS keys, SSM parameters and buckets, with the etcd release tarball (whose bytes the program
    fetches or builds at `pulumi up`) given as `release`."""
    return aws.Seed(region=run.config.region, keys=tuple(key.state["arn"] for key in run.of_type(KEY)),
                    buckets=tuple(_bucket(run, bucket, release) for bucket in run.of_type(BUCKET)),
                    parameters=parameters(run))


def load_balancer(run: OfflineRun, specs: tuple[MemberSpec, ...]) -> BalancerPlan:
    """The internal NLB as the program makes it: its address per subnet, its listener, its target group's targets
    and health check."""
    (balancer,) = run.of_type(BALANCER)
    (group,) = run.of_type(TARGET_GROUP)
    (listener,) = run.of_type(LISTENER)
    check = group.inputs["healthCheck"]
    names = {spec.address: spec.name for spec in specs}
    attachments = sorted(run.of_type(ATTACHMENT), key=lambda a: names[a.inputs["targetId"]])
    (target_port,) = {int(a.inputs["port"]) for a in attachments}
    return BalancerPlan(
        addresses=tuple(m["privateIpv4Address"] for m in balancer.inputs["subnetMappings"]),
        port=int(listener.inputs["port"]),
        targets=tuple(Target(names[a.inputs["targetId"]], a.inputs["targetId"]) for a in attachments),
        target_port=target_port, check_port=int(check["port"]), check_path=check["path"],
        check_status=check["matcher"], interval_s=int(check["interval"]),
        healthy_threshold=int(check["healthyThreshold"]), unhealthy_threshold=int(check["unhealthyThreshold"]))


def discovery_plan(run: OfflineRun, specs: tuple[MemberSpec, ...]) -> DiscoveryPlan | None:
    """With bootstrap `discovery`: the token of the stack's discovery URL, for as many members as it plans."""
    if run.config.bootstrap != Bootstrap.DISCOVERY:
        return None
    if not run.config.discovery_url:
        raise ValueError("the machines need etcd:discoveryUrl set to a URL of the discovery stand-in "
                         "(sandbox/machines/discovery.py new_url)")
    return DiscoveryPlan(token=token_of(run.config.discovery_url), size=len(specs))


def plan(run: OfflineRun, release: bytes | None = None) -> FleetPlan:
    specs = members(run)
    return FleetPlan(region=run.config.region, members=specs, hosts=hosts(run), volume_gib=volume_gib(run),
                     seed=seed(run, release), balancer=load_balancer(run, specs), discovery=discovery_plan(run, specs))

"""The etcd members: per member a network interface, a data volume, an instance and its attachment.

The interface (fixed address), the name and the volume belong to the member, not to the instance:
replacing an instance (new image, new type, new bootstrap) attaches the same three again, and the
member rejoins as itself with its data. A change to what members run reaches them one at a time: member
i's instance waits for its `before` gate, which waits for member i-1's `after` gate (DESIGN.md, decision 9).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi.dynamic import ResourceProvider

from etcd_stack.addressing import MemberPlan, member_name
from etcd_stack.cloud.access import al2023_ami
from etcd_stack.cloud.backup import destination
from etcd_stack.cloud.gates import GateArgs, MemberGate
from etcd_stack.cloud.image import PinnedImage
from etcd_stack.cloud.pki import MemberSecrets
from etcd_stack.config import CLUSTER_SIZES, architecture
from etcd_stack.member import rendering
from etcd_stack.member.rendering import BackupSettings, BootstrapSettings, ClusterSettings, MetricsSettings, Paths
from etcd_stack.naming import ca_bundle_parameter
from etcd_stack.tags import MEMBER_TAG, ROLE_TAG, tagged

DATA_DEVICE = "/dev/sdf"


@dataclass(frozen=True)
class MembersArgs:
    cluster: ClusterSettings
    discovery_url: pulumi.Input[str] | None
    region: str
    instance_type: str
    data_volume_size: int
    private_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    roles: Sequence[aws.iam.Role]
    instance_profiles: Sequence[aws.iam.InstanceProfile]
    secrets: Sequence[MemberSecrets]
    ca_cert_pem: pulumi.Input[str]
    tags: Mapping[str, str]
    sha256: Mapping[str, str]
    backup_bucket: pulumi.Input[str]
    backup_interval_minutes: int
    image_generation: int
    # The gates' checks (etcd_stack/ops), and whether the cluster already runs (a new one is not gated).
    gate_provider: ResourceProvider
    bootstrapped: pulumi.Input[bool]
    stack: str
    metrics_namespace: str
    # The release tarball the deployer put into the stack's bucket (cloud/release.py): bucket and key.
    release_bucket: pulumi.Input[str] = ""
    release_key: pulumi.Input[str] = ""


class EtcdMembers(pulumi.ComponentResource):
    instances: list[aws.ec2.Instance]
    interfaces: list[aws.ec2.NetworkInterface]
    volumes: list[aws.ebs.Volume]
    user_data: list[pulumi.Output[str]]
    gates: list[tuple[MemberGate, MemberGate]]

    def __init__(self, name: str, args: MembersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:members:EtcdMembers", name, None, opts)
        self._name, self._args = name, args
        self.image = PinnedImage(f"{name}-image", al2023_ami(args.instance_type), args.image_generation,
                                 architecture(args.instance_type), opts=pulumi.ResourceOptions(parent=self)).image
        self.instances, self.interfaces, self.volumes, self.user_data, self.gates = [], [], [], [], []
        self._retirements = self._retire_unplanned()
        for plan in args.cluster.members:
            self._member(plan)
        self.register_outputs({"instance_ids": [instance.id for instance in self.instances]})

    def _member(self, plan: MemberPlan) -> None:
        args = self._args
        name = f"{self._name}-{plan.index}"
        child = pulumi.ResourceOptions(parent=self)
        member_tags = {**args.tags, MEMBER_TAG: plan.name, ROLE_TAG: "member"}
        interface = aws.ec2.NetworkInterface(
            name,
            subnet_id=args.private_subnet_ids[plan.zone_index],
            private_ips=[plan.ip],
            security_groups=[args.security_group_id],
            description=f"etcd member {plan.name}",
            tags=tagged(member_tags, name),
            opts=child,
        )
        volume = aws.ebs.Volume(
            f"{name}-data",
            availability_zone=plan.availability_zone,
            size=args.data_volume_size,
            type="gp3",
            encrypted=True,
            tags=tagged(member_tags, f"{name}-data"),
            opts=child,
        )
        secrets = args.secrets[plan.index]
        read_tls = aws.iam.RolePolicy(
            f"{name}-read-tls",
            role=args.roles[plan.index].id,
            policy=secrets.read_policy,
            opts=child,
        )
        user_data = pulumi.Output.all(args.ca_cert_pem, args.discovery_url, volume.id, args.backup_bucket,
                                      args.release_bucket, args.release_key).apply(
            lambda values, plan=plan, secrets=secrets: self._render(plan, secrets, *values)
        )
        revision = pulumi.Output.all(user_data, self.image, args.instance_type).apply(_revision)
        before = self._gate(f"{name}-before", plan.name, "before", revision, None, self._chained())
        instance = aws.ec2.Instance(
            name,
            ami=self.image,
            instance_type=args.instance_type,
            iam_instance_profile=args.instance_profiles[plan.index].name,
            primary_network_interface={"network_interface_id": interface.id},
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3"},
            user_data_base64=user_data.apply(rendering.compress),
            # cloud-init reads user_data once per instance: a new one takes a new instance.
            user_data_replace_on_change=True,
            tags=tagged(member_tags, name),
            opts=pulumi.ResourceOptions(
                parent=self,
                # The interface can be primary to one instance at a time: the old one goes first.
                delete_before_replace=True,
                depends_on=[read_tls, before],
            ),
        )
        attachment = aws.ec2.VolumeAttachment(
            f"{name}-data",
            device_name=DATA_DEVICE,
            volume_id=volume.id,
            instance_id=instance.id,
            # etcd is stopped cleanly before its disk goes away.
            stop_instance_before_detaching=True,
            opts=child,
        )
        after = self._gate(f"{name}-after", plan.name, "after", revision, instance.id, [attachment])
        self.gates.append((before, after))
        self.instances.append(instance)
        self.interfaces.append(interface)
        self.volumes.append(volume)
        self.user_data.append(user_data)

    def _retire_unplanned(self) -> list[MemberGate]:
        """A gate for every member index the cluster's size leaves out, the highest first: a smaller cluster
        takes those members out of etcd's membership before their instances go at the end of the run."""
        retirements: list[MemberGate] = []
        for index in reversed(range(len(self._args.cluster.members), max(CLUSTER_SIZES))):
            previous = retirements[-1:]
            retirements.append(self._gate(f"{self._name}-{index}-retire", member_name(index), "retire", "", None,
                                          self._when_running(previous)))
        return retirements

    def _chained(self) -> pulumi.Input[list[pulumi.Resource]]:
        """On a running cluster a member waits for the previous member's `after` gate (the first member for
        the retirements); a new cluster's members go at once."""
        previous = [self.gates[-1][1]] if self.gates else self._retirements[-1:]
        return self._when_running(previous)

    def _when_running(self, previous: list[pulumi.Resource]) -> pulumi.Input[list[pulumi.Resource]]:
        if not previous:
            return []
        return pulumi.Output.from_input(self._args.bootstrapped).apply(lambda running: previous if running else [])

    def _gate(self, name: str, member: str, phase: str, revision: pulumi.Input[str],
              instance: pulumi.Input[str] | None, after: pulumi.Input[list[pulumi.Resource]]) -> MemberGate:
        args = self._args
        return MemberGate(
            name,
            args.gate_provider,
            GateArgs(phase=phase, member=member, members=[m.name for m in args.cluster.members], revision=revision,
                     version=str(args.cluster.version), bootstrapped=args.bootstrapped, region=args.region,
                     stack=args.stack, cluster=args.cluster.name, instance=instance),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

    def _render(self, plan: MemberPlan, secrets: MemberSecrets, ca_cert_pem: str, discovery_url: str | None,
                volume_id: str, bucket: str, release_bucket: str, release_key: str) -> str:
        args = self._args
        backup = BackupSettings(destination(bucket, args.cluster.name), args.backup_interval_minutes, args.region)
        cluster = dataclasses.replace(args.cluster, discovery_url=discovery_url, backup=backup,
                                      metrics=MetricsSettings(args.metrics_namespace))
        boot = BootstrapSettings(
            sha256=args.sha256,
            region=args.region,
            key_parameter=f"{secrets.path}/key",
            cert_parameter=f"{secrets.path}/cert",
            ca_parameter=ca_bundle_parameter(args.stack, args.cluster.name),
            volume_id=volume_id,
            release_bucket=release_bucket,
            release_key=release_key,
        )
        return rendering.user_data(cluster, plan, Paths(), boot, ca_cert_pem)


def _revision(values: list[str]) -> str:
    """What the member runs, as one digest: its bootstrap document, image and instance type."""
    return hashlib.sha256("\0".join(values).encode()).hexdigest()[:16]

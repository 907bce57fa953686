"""The etcd members: per member a network interface, a data volume, an instance and its attachment.

The interface (fixed address), the name and the volume belong to the member, not to the instance:
replacing an instance (new image, new type, new bootstrap) attaches the same three again, and the
member rejoins as itself with its data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.addressing import MemberPlan
from etcd_stack.cloud import iam
from etcd_stack.cloud.access import al2023_ami
from etcd_stack.cloud.backup import destination
from etcd_stack.cloud.pki import MemberSecrets, ca_bundle_parameter
from etcd_stack.member import rendering
from etcd_stack.member.rendering import BackupSettings, BootstrapSettings, ClusterSettings, MetricsSettings, Paths
from etcd_stack.tags import ROLE_TAG, tagged

DATA_DEVICE = "/dev/sdf"
MEMBER_TAG = "etcd-member"
# Changes to these reach a member only when it is replaced, one member at a time (README: Operations):
# applied in place they would restart every member at once.
ROLLED_PROPERTIES = ["ami", "instanceType", "userDataBase64"]


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
    metrics_namespace: str


class EtcdMembers(pulumi.ComponentResource):
    instances: list[aws.ec2.Instance]
    interfaces: list[aws.ec2.NetworkInterface]
    volumes: list[aws.ebs.Volume]
    user_data: list[pulumi.Output[str]]

    def __init__(self, name: str, args: MembersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:members:EtcdMembers", name, None, opts)
        self._name, self._args = name, args
        self._ami = al2023_ami(args.instance_type)
        self.instances, self.interfaces, self.volumes, self.user_data = [], [], [], []
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
            policy=pulumi.Output.all(secrets.key.arn, secrets.cert.arn, secrets.ca_bundle.arn).apply(
                lambda arns: iam.policy({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": sorted(arns)})
            ),
            opts=child,
        )
        user_data = pulumi.Output.all(args.ca_cert_pem, args.discovery_url, volume.id, args.backup_bucket).apply(
            lambda values, plan=plan, secrets=secrets: self._render(plan, secrets, *values)
        )
        instance = aws.ec2.Instance(
            name,
            ami=self._ami,
            instance_type=args.instance_type,
            iam_instance_profile=args.instance_profiles[plan.index].name,
            primary_network_interface={"network_interface_id": interface.id},
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3"},
            user_data_base64=user_data.apply(rendering.compress),
            tags=tagged(member_tags, name),
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=ROLLED_PROPERTIES,
                # The interface can be primary to one instance at a time: the old one goes first.
                delete_before_replace=True,
                depends_on=[read_tls],
            ),
        )
        aws.ec2.VolumeAttachment(
            f"{name}-data",
            device_name=DATA_DEVICE,
            volume_id=volume.id,
            instance_id=instance.id,
            # etcd is stopped cleanly before its disk goes away.
            stop_instance_before_detaching=True,
            opts=child,
        )
        self.instances.append(instance)
        self.interfaces.append(interface)
        self.volumes.append(volume)
        self.user_data.append(user_data)

    def _render(self, plan: MemberPlan, secrets: MemberSecrets, ca_cert_pem: str, discovery_url: str | None,
                volume_id: str, bucket: str) -> str:
        args = self._args
        backup = BackupSettings(destination(bucket, args.cluster.name), args.backup_interval_minutes, args.region)
        cluster = dataclasses.replace(args.cluster, discovery_url=discovery_url, backup=backup,
                                      metrics=MetricsSettings(args.metrics_namespace))
        boot = BootstrapSettings(
            sha256=args.sha256,
            region=args.region,
            key_parameter=f"{secrets.path}/key",
            cert_parameter=f"{secrets.path}/cert",
            ca_parameter=ca_bundle_parameter(args.cluster.name),
            volume_id=volume_id,
        )
        return rendering.user_data(cluster, plan, Paths(), boot, ca_cert_pem)

"""etcd on AWS: load the config, build the components, export what operators need."""

import pulumi

from etcd_stack import config, naming
from etcd_stack.addressing import plan_load_balancer, plan_members
from etcd_stack.cloud import dns
from etcd_stack.cloud.access import Bastion, BastionArgs, MemberAccess, MemberAccessArgs
from etcd_stack.cloud.alarms import AlarmArgs, ClusterAlarms
from etcd_stack.cloud.backup import BackupArgs, BackupBucket, destination
from etcd_stack.cloud.dashboard import ClusterDashboard, DashboardArgs
from etcd_stack.cloud.discovery import DiscoveryToken
from etcd_stack.cloud.dns import ClusterDns, DnsArgs
from etcd_stack.cloud.gates import ClusterRecord
from etcd_stack.cloud.keys import BucketUsers, Reader, StackKey, StackKeyArgs, deployer
from etcd_stack.cloud.load_balancer import ClientLoadBalancer, LoadBalancerArgs
from etcd_stack.cloud.members import EtcdMembers, MembersArgs
from etcd_stack.cloud.network import Network, NetworkArgs, availability_zones, existing_network
from etcd_stack.cloud.operators import OperatorCertificates, OperatorCertsArgs
from etcd_stack.cloud.outputs import etcdctl_commands
from etcd_stack.cloud.pki import ClusterPki, PkiArgs, member_parameters, no_read_policy, parameter_root
from etcd_stack.cloud.release import EtcdRelease, release_key
from etcd_stack.member.rendering import ClusterSettings, quota_backend_bytes
from etcd_stack.ops.rollout import MemberGateProvider

cfg = config.load(config.raw_from_pulumi(), pulumi.get_stack())
name, tags = cfg.cluster_name, cfg.common_tags

# etcd:vpcId deploys into a VPC the user has: read and checked through the EC2 API, nothing created.
network = existing_network(cfg) if cfg.vpc_id else Network(
    name,
    NetworkArgs(
        cidr=cfg.vpc_cidr,
        availability_zones=availability_zones(cfg.region),
        nat_strategy=cfg.nat_strategy,
        flow_log_retention_days=cfg.flow_log_retention_days,
        tags=tags,
    ),
)
members = plan_members(cfg.cluster_size, network.zones, dns.domain(cfg.stack, name), cfg.member_ips)
balancer_ips = plan_load_balancer(network.zones, members)
client_endpoint = dns.client_endpoint(cfg.stack, name)

access = MemberAccess(
    f"{name}-access",
    MemberAccessArgs(cluster_size=cfg.cluster_size, vpc_id=network.vpc_id, vpc_cidr=network.cidr, tags=tags,
                     client_cidrs=cfg.client_sources(network.cidr),
                     client_security_group_ids=cfg.client_security_group_ids),
)
account, deployer_arn = deployer()
bastion = None
if cfg.bastion:
    bastion = Bastion(
        f"{name}-bastion",
        BastionArgs(
            instance_type=cfg.bastion_instance_type,
            subnet_id=network.public_subnet_ids[0],
            vpc_id=network.vpc_id,
            vpc_cidr=network.cidr,
            allowed_cidrs=cfg.ssh_allowed_cidrs,
            ssh_public_key=cfg.ssh_public_key,
            member_security_group=access.security_group,
            tags=tags,
            internet_gateway=network.internet_gateway,
            parameter_policy=no_read_policy(cfg.region, account, cfg.stack, name),
            load_balancer_security_group=access.load_balancer_security_group,
        ),
    )

# The bucket is encrypted with the stack's key, whose policy names the bucket: the key's ARN is known only once
# the key exists, so the bucket takes it as a deferred output, resolved from the key below.
key_arn, resolve_key_arn = pulumi.deferred_output()
backups = BackupBucket(
    f"{name}-backup",
    BackupArgs(cluster_name=name, stack=cfg.stack, retention_days=cfg.backup_retention_days, lock=cfg.backup_lock,
               on_destroy=cfg.backups_on_destroy, roles=access.roles, tags=tags, kms_key_arn=key_arn,
               break_glass_role_arn=cfg.backup_break_glass_role_arn,
               release_key=release_key(str(cfg.version), cfg.release_arch)),
)

stack_key = StackKey(
    f"{name}-secrets",
    StackKeyArgs(
        alias=naming.key_alias(cfg.stack, name),
        region=cfg.region,
        account=account,
        deployer_arn=deployer_arn,
        parameter_root=parameter_root(cfg.stack, name),
        readers=[Reader(role.arn, member_parameters(cfg.stack, name, m.name))
                 for role, m in zip(access.roles, members, strict=True)],
        backups=BucketUsers(backups.bucket_arn, writers=[role.arn for role in access.roles],
                            readers=[cfg.backup_break_glass_role_arn] if cfg.backup_break_glass_role_arn else []),
        tags=tags,
    ),
)
resolve_key_arn(stack_key.arn)
# The etcd the members install, in the stack's bucket: a member boots without the internet.
release = EtcdRelease(f"{name}-etcd-release", backups.bucket_name, str(cfg.version), cfg.release_arch,
                      cfg.release_sum, opts=pulumi.ResourceOptions(depends_on=backups.ready))
pki = ClusterPki(
    f"{name}-pki",
    PkiArgs(cluster_name=name, members=members, client_endpoint=client_endpoint, tags=tags, stack=cfg.stack,
            region=cfg.region, account=account, key_arn=stack_key.arn,
            ca_generation=cfg.ca_generation, ca_rotation=cfg.ca_rotation, key_generation=cfg.key_generation,
            operator_key=cfg.operator_key),
)

# Per-person client certificates from requests in etcd:operatorCsrs; the keys stay on the people's machines.
operators = OperatorCertificates(
    f"{name}-operators",
    OperatorCertsArgs(requests=cfg.operator_csrs, ca_private_key_pem=pki.issuer.key.private_key_pem,
                      ca_cert_pem=pki.issuer.cert_pem),
)

metrics_namespace = naming.metric_namespace(cfg.stack, name)

discovery_url = None
if cfg.bootstrap is config.Bootstrap.DISCOVERY:
    discovery_url = cfg.discovery_url or DiscoveryToken(
        f"{name}-discovery", endpoint=cfg.discovery_endpoint, size=cfg.cluster_size
    ).url

# Tells a running cluster from a new one (only a running one is rolled through gates), and refuses at
# preview what a running cluster cannot take: a smaller volume.
record = ClusterRecord(f"{name}-version", cfg.version, cfg.cluster_size, cfg.data_volume_size)

etcd = EtcdMembers(
    f"{name}-etcd",
    MembersArgs(
        cluster=ClusterSettings(
            name=name,
            token=f"{name}-{cfg.stack}",
            version=cfg.version,
            bootstrap=cfg.bootstrap,
            members=members,
            heartbeat_ms=cfg.heartbeat_ms,
            election_ms=cfg.election_ms,
            quota_backend_bytes=quota_backend_bytes(cfg.data_volume_size, cfg.quota_backend_bytes),
            defrag_schedule=cfg.defrag_schedule,
        ),
        discovery_url=discovery_url,
        region=cfg.region,
        instance_type=cfg.instance_type,
        data_volume_size=cfg.data_volume_size,
        private_subnet_ids=network.private_subnet_ids,
        security_group_id=access.security_group_id,
        roles=access.roles,
        instance_profiles=access.instance_profiles,
        secrets=pki.member_secrets,
        ca_cert_pem=pki.ca_cert_pem,
        tags=tags,
        sha256={cfg.release_arch: cfg.release_sum},
        backup_bucket=backups.bucket_name,
        backup_interval_minutes=cfg.backup_interval_minutes,
        image_generation=cfg.image_generation,
        gate_provider=MemberGateProvider(),
        bootstrapped=record.bootstrapped,
        stack=cfg.stack,
        metrics_namespace=metrics_namespace,
        release_bucket=release.bucket,
        release_key=release.key,
    ),
)

balancer = ClientLoadBalancer(
    f"{name}-client",
    LoadBalancerArgs(
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        members=members,
        addresses=balancer_ips,
        tags=tags,
        security_group_id=access.load_balancer_security_group.id,
    ),
)
ClusterDns(
    f"{name}-dns",
    DnsArgs(
        domain=dns.domain(cfg.stack, name),
        client_endpoint=client_endpoint,
        vpc_id=network.vpc_id,
        members=members,
        load_balancer_ips=balancer_ips,
        tags=tags,
    ),
)

ClusterAlarms(
    f"{name}-alarms",
    AlarmArgs(
        cluster_name=name,
        stack=cfg.stack,
        cluster_size=cfg.cluster_size,
        member_names=[m.name for m in members],
        roles=access.roles,
        metrics_namespace=metrics_namespace,
        load_balancer_arn_suffix=balancer.arn_suffix,
        target_group_arn_suffix=balancer.target_group_arn_suffix,
        backup_interval_minutes=cfg.backup_interval_minutes,
        arrival_rule_name=backups.arrival_rule_name,
        backup_age_after=[backups.created_marker],
        topic_arn=cfg.alarm_topic_arn,
        tags=tags,
    ),
)
ClusterDashboard(
    f"{name}-dashboard",
    DashboardArgs(
        cluster_name=name,
        stack=cfg.stack,
        region=cfg.region,
        cluster_size=cfg.cluster_size,
        member_names=[m.name for m in members],
        metrics_namespace=metrics_namespace,
        load_balancer_arn_suffix=balancer.arn_suffix,
        target_group_arn_suffix=balancer.target_group_arn_suffix,
        arrival_rule_name=backups.arrival_rule_name,
        backup_interval_minutes=cfg.backup_interval_minutes,
    ),
)

pulumi.export("clientEndpoint", f"https://{client_endpoint}:2379")
pulumi.export("loadBalancerDnsName", balancer.dns_name)
pulumi.export("members", [
    {"name": m.name, "dnsName": m.dns_name, "ip": m.ip, "availabilityZone": m.availability_zone,
     "instanceId": instance.id}
    for m, instance in zip(members, etcd.instances, strict=True)
])
pulumi.export("caCertPem", pki.ca_cert_pem)
pulumi.export("operatorCertPem", pki.operator.cert_pem if pki.operator else None)
pulumi.export("operatorKeyPem", pki.operator.private_key_pem if pki.operator else None)
pulumi.export("operatorCerts", operators.cert_pems)
# Whoever holds the token can register members into the cluster's bootstrap.
pulumi.export("discoveryUrl", pulumi.Output.secret(discovery_url) if discovery_url else None)
pulumi.export("backupDestination", backups.bucket_name.apply(lambda bucket: destination(bucket, name)))
pulumi.export("etcdctl", etcdctl_commands(client_endpoint, [m.dns_name for m in members],
                                          shared_key=cfg.operator_key))
pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("natGatewayPublicIps", [nat.public_ip for nat in network.nat_gateways])
pulumi.export("memberSecurityGroupId", access.security_group_id)
pulumi.export("bastionPublicIp", bastion.public_ip if bastion else None)
pulumi.export("bastionSsh", bastion.public_ip.apply(lambda ip: f"ssh ec2-user@{ip}") if bastion else None)

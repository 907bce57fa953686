"""Pure renderers: plain values in, the text each member runs out.

The etcd configuration is built as data with the key set of the target etcd line; the
cloud-config document, the systemd unit and the bootstrap script come from the Jinja2
templates in templates/. Nothing here touches Pulumi or the network.
"""

from __future__ import annotations

import base64
import gzip
import shlex
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml

from etcd_stack.addressing import MemberPlan
from etcd_stack.config import DEFRAG_SCHEDULE, Bootstrap, EtcdVersion
from etcd_stack.member.certificates import PEER_NAME
from etcd_stack.member.metrics import MEMBER_DIMENSION, METRICS

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
CLIENT_PORT, PEER_PORT, METRICS_PORT = 2379, 2380, 2381
GIB = 1024**3
# EC2 refuses user_data over 16 KB; it goes gzip-compressed (cloud-init unpacks it), which leaves room.
USER_DATA_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Paths:
    """Where things live on a member. The sandbox moves them under its own directory."""

    config_file: str = "/etc/etcd/etcd.yaml"
    join_config_file: str = "/etc/etcd/etcd-join.yaml"
    pki_dir: str = "/etc/etcd/pki"
    data_mount: str = "/var/lib/etcd"
    data_dir: str = "/var/lib/etcd/data"
    bin_dir: str = "/usr/local/bin"
    sbin_dir: str = "/usr/local/sbin"
    unit_dir: str = "/etc/systemd/system"
    backup_state_dir: str = "/var/lib/etcd-backup"
    # Snapshots are staged on the data volume, sized for them (/tmp is a tmpfs of half the memory on AL2023), in
    # a directory of the backup's own: the unit runs as etcd with a read-only root and data mount.
    backup_staging_dir: str = "/var/lib/etcd/backup-staging"
    metrics_state_dir: str = "/var/lib/etcd-metrics"
    fstab: str = "/etc/fstab"
    devices: str = "/dev"

    def script(self, name: str) -> str:
        return f"{self.sbin_dir}/{name}"

    def unit(self, name: str) -> str:
        return f"{self.unit_dir}/{name}"

    @property
    def bootstrap_script(self) -> str:
        return self.script("etcd-bootstrap")

    @property
    def ca_file(self) -> str:
        return f"{self.pki_dir}/ca.crt"

    @property
    def cert_file(self) -> str:
        return f"{self.pki_dir}/member.crt"

    @property
    def key_file(self) -> str:
        return f"{self.pki_dir}/member.key"


@dataclass(frozen=True)
class BackupSettings:
    """Where the leader's snapshots go: s3://bucket/prefix on AWS, file:///directory in the sandbox."""

    destination: str
    interval_minutes: int
    region: str = ""
    # S3 takes up to 10,000 parts of 5 MiB to 5 GiB: 1 GiB parts carry any snapshot etcd's quota allows.
    part_mib: int = 1024


@dataclass(frozen=True)
class MetricsSettings:
    """Where each member's etcd figures go: CloudWatch (`cloudwatch`) on AWS, file:///path in the sandbox."""

    namespace: str
    sink: str = "cloudwatch"


@dataclass(frozen=True)
class ClusterSettings:
    """What every member's configuration shares."""

    name: str
    token: str
    version: EtcdVersion
    bootstrap: Bootstrap
    members: tuple[MemberPlan, ...]
    heartbeat_ms: int
    election_ms: int
    quota_backend_bytes: int
    # Both known only once AWS has named the bucket and the discovery service has answered.
    backup: BackupSettings | None = None
    discovery_url: str | None = None
    metrics: MetricsSettings | None = None
    # When the members' defragmentation timers fire (etcd:defragSchedule).
    defrag_schedule: str = DEFRAG_SCHEDULE

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={_urls('https', [m.dns_name], PEER_PORT)}" for m in self.members)

    @property
    def snapshot_tool(self) -> str:
        """etcd 3.5 moved snapshot status and restore to etcdutl; 3.6 dropped them from etcdctl."""
        return "etcdctl" if self.version.line == (3, 4) else "etcdutl"


@dataclass(frozen=True)
class BootstrapSettings:
    """What the bootstrap script needs beyond the configuration: where etcd and the secrets come from."""

    sha256: Mapping[str, str]
    region: str
    key_parameter: str
    cert_parameter: str
    ca_parameter: str
    volume_id: str
    # Where the deployer put the release tarball for the members' architecture (cloud/release.py).
    release_bucket: str = ""
    release_key: str = ""

    @property
    def release_uri(self) -> str:
        return f"s3://{self.release_bucket}/{self.release_key}"


def quota_backend_bytes(volume_gib: int, configured: int | None = None) -> int:
    """etcd:quotaBackendBytes when set, else etcd's recommended ceiling of 8 GiB but never more than half the
    data volume."""
    return configured or min(8 * GIB, volume_gib * GIB // 2)


def _urls(scheme: str, hosts: Sequence[str], port: int) -> str:
    return ",".join(f"{scheme}://{host}:{port}" for host in hosts)


def _listen_hosts(member: MemberPlan) -> list[str]:
    # Local tools reach the member on loopback too, unless its own address already is loopback.
    return [member.ip] if member.ip.startswith("127.") else [member.ip, "127.0.0.1"]


# The first releases whose config file reads the peer pin (`allowed-hostname` in the transport block, a list).
PEER_PIN_KEY_SINCE = EtcdVersion(3, 5, 15)


def _pin_peers(config: dict[str, Any], version: EtcdVersion) -> None:
    """The peer listener admits only certificates naming PEER_NAME: operator and client certificates of
    the same CA cannot join as peers."""
    if version >= PEER_PIN_KEY_SINCE:
        config["peer-transport-security"]["allowed-hostname"] = [PEER_NAME]
    else:
        # Before 3.5.15 the config file has no key for it and ignores the flag; its JSON decoding still fills
        # Config.PeerTLSInfo (a Go field without a tag, matched by name), and only four of its fields are
        # overwritten from peer-transport-security (embed/config.go, configFromFile, copySecurityDetails).
        config["PeerTLSInfo"] = {"AllowedHostname": PEER_NAME}


def _transport_security(paths: Paths) -> dict[str, Any]:
    return {
        "cert-file": paths.cert_file,
        "key-file": paths.key_file,
        "trusted-ca-file": paths.ca_file,
        "client-cert-auth": True,
        "auto-tls": False,
    }


def etcd_config(cluster: ClusterSettings, member: MemberPlan, paths: Paths, joining: bool = False) -> dict[str, Any]:
    """The member's --config-file as data. etcd silently ignores unknown keys, so each key here is
    one the target line knows (tests check them against the real etcd and its source). Joining, the
    member enters a running cluster of the planned members (after `etcd-join prepare`)."""
    hosts = _listen_hosts(member)
    config: dict[str, Any] = {
        "name": member.name,
        "data-dir": paths.data_dir,
        "listen-peer-urls": _urls("https", [member.ip], PEER_PORT),
        "listen-client-urls": _urls("https", hosts, CLIENT_PORT),
        # Plain HTTP on purpose: the load balancer's health check has no client certificate.
        "listen-metrics-urls": _urls("http", hosts, METRICS_PORT),
        "advertise-client-urls": _urls("https", [member.dns_name], CLIENT_PORT),
        "initial-advertise-peer-urls": _urls("https", [member.dns_name], PEER_PORT),
        "initial-cluster-state": "existing" if joining else "new",
        "heartbeat-interval": cluster.heartbeat_ms,
        "election-timeout": cluster.election_ms,
        "quota-backend-bytes": cluster.quota_backend_bytes,
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "snapshot-count": 10000,
        "strict-reconfig-check": True,
        "logger": "zap",
        "log-level": "info",
        "log-outputs": ["stderr"],
        "client-transport-security": _transport_security(paths),
        "peer-transport-security": _transport_security(paths),
    }
    if cluster.bootstrap is Bootstrap.DISCOVERY and not joining:
        config["discovery"] = cluster.discovery_url
    else:
        config["initial-cluster"] = cluster.initial_cluster()
        config["initial-cluster-token"] = cluster.token
    line = cluster.version.line
    if line == (3, 4):
        config["enable-grpc-gateway"] = True  # off by default in 3.4's config file
    if line <= (3, 5):
        config["experimental-initial-corrupt-check"] = True
    else:
        config["feature-gates"] = "InitialCorruptCheck=true"
    _pin_peers(config, cluster.version)
    return config


# --- text: YAML and templates ---------------------------------------------------------------

class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so PEM blocks and scripts read as themselves."""


def _literal_when_safe(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # A block that starts with a space or a line break needs an indentation indicator, which holds only
    # at the indentation it was emitted for; such text is emitted double-quoted instead.
    style = "|" if "\n" in text and not text.startswith((" ", "\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_LiteralDumper.add_representer(str, _literal_when_safe)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_LiteralDumper, sort_keys=False, width=float("inf"))


def yaml_value(value: Any, indent: int = 0) -> str:
    """A value as YAML, for a template: the emitter picks quoting and block style; continuation
    lines move right by `indent` so the block sits under its key."""
    text = to_yaml(value)
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    first, _, rest = text.rstrip("\n").partition("\n")
    return first + ("\n" + textwrap.indent(rest, " " * indent) if rest else "")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["yaml"] = yaml_value
    environment.filters["sh"] = lambda value: shlex.quote(str(value))
    environment.filters["py"] = repr
    return environment


_ENV = _environment()


def render_template(name: str, **values: Any) -> str:
    return _ENV.get_template(name).render(**values)


# The EC2 instance metadata service, over IPv4 and over IPv6 (Nitro).
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")


def systemd_unit(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    return render_template(
        "etcd.service.j2",
        member_name=member.name,
        cluster_name=cluster.name,
        data_mount=paths.data_mount,
        etcd_binary=f"{paths.bin_dir}/etcd",
        config_file=paths.config_file,
        metadata_addresses=METADATA_ADDRESSES,
    )


def bootstrap_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths, boot: BootstrapSettings,
                     etcd_user: str = "etcd") -> str:
    return render_template(
        "etcd-bootstrap.sh.j2",
        etcd_user=etcd_user,
        member_name=member.name,
        version=str(cluster.version),
        release_uri=boot.release_uri,
        sha256_amd64=boot.sha256.get("amd64", ""),
        sha256_arm64=boot.sha256.get("arm64", ""),
        region=boot.region,
        key_parameter=boot.key_parameter,
        cert_parameter=boot.cert_parameter,
        ca_parameter=boot.ca_parameter,
        # Nitro instances name an EBS volume by its id; Xen ones by the attachment's device name.
        nvme_device=f"{paths.devices}/disk/by-id/nvme-Amazon_Elastic_Block_Store_{boot.volume_id.replace('-', '')}",
        xen_device=f"{paths.devices}/xvdf",
        join_script=paths.script("etcd-join"),
        paths=paths,
    )


def _member_values(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> dict[str, Any]:
    """What the day-2 scripts share: who the member is and how its etcdctl reaches the cluster."""
    if cluster.backup is None:
        raise ValueError("the cluster's backup destination is needed to render the day-2 scripts")
    return {
        "member_name": member.name,
        "cluster_name": cluster.name,
        "endpoint": _urls("https", [member.ip], CLIENT_PORT),
        "health_url": f"{_urls('http', [member.ip], METRICS_PORT)}/health",
        "peer_url": _urls("https", [member.dns_name], PEER_PORT),
        "snapshot_tool": cluster.snapshot_tool,
        "region": cluster.backup.region,
        "paths": paths,
    }


def backup_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    return render_template(
        "etcd-backup.sh.j2", destination=cluster.backup.destination, state_dir=paths.backup_state_dir,
        part_mib=cluster.backup.part_mib, **_member_values(cluster, member, paths),
    )


def restore_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths, etcd_user: str = "etcd") -> str:
    return render_template(
        "etcd-restore.sh.j2", initial_cluster=cluster.initial_cluster(), etcd_user=etcd_user,
        **_member_values(cluster, member, paths),
    )


def ctl_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    return render_template("etcd-ctl.sh.j2", **_member_values(cluster, member, paths))


def snapshots_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    return render_template("etcd-snapshots.sh.j2", destination=cluster.backup.destination,
                           **_member_values(cluster, member, paths))


def defrag_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    return render_template("etcd-defrag.sh.j2", **_member_values(cluster, member, paths))


def metrics_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    values = _member_values(cluster, member, paths)
    if cluster.metrics is None:
        raise ValueError("the cluster's metrics namespace is needed to render the metrics publisher")
    return render_template(
        "etcd-metrics.py.j2", metrics_url=f"{_urls('http', [_listen_hosts(member)[-1]], METRICS_PORT)}/metrics",
        namespace=cluster.metrics.namespace, member_dimension=MEMBER_DIMENSION, sink=cluster.metrics.sink,
        state_file=f"{paths.metrics_state_dir}/state.json", etcdctl=f"{paths.bin_dir}/etcdctl",
        units={metric.name: metric.unit for metric in METRICS}, **values,
    )


def metrics_units(cluster: ClusterSettings, paths: Paths) -> tuple[str, str]:
    """The service that runs the metrics publisher, and the timer that runs it every minute."""
    service = render_template("etcd-metrics.service.j2", cluster_name=cluster.name,
                              script=paths.script("etcd-metrics"))
    return service, render_template("etcd-metrics.timer.j2", cluster_name=cluster.name)


def join_script(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> str:
    others = [m.dns_name for m in cluster.members if m.name != member.name]
    return render_template("etcd-join.sh.j2", others=_urls("https", others, CLIENT_PORT),
                           **_member_values(cluster, member, paths))


def _state_directory(path: str) -> str:
    """systemd's StateDirectory= names a directory under /var/lib, and creates it owned by the unit's user."""
    relative = PurePosixPath(path).relative_to("/var/lib")
    if not relative.parts:
        raise ValueError(f"a unit's state directory {path} must be a directory below /var/lib")
    return str(relative)


def backup_units(cluster: ClusterSettings, paths: Paths) -> tuple[str, str]:
    """The service that runs the backup script, and the timer that runs the service."""
    service = render_template("etcd-backup.service.j2", cluster_name=cluster.name, script=paths.script("etcd-backup"),
                              state_directory=_state_directory(paths.backup_state_dir),
                              staging_directory=_state_directory(paths.backup_staging_dir))
    timer = render_template("etcd-backup.timer.j2", cluster_name=cluster.name,
                            interval_minutes=cluster.backup.interval_minutes)
    return service, timer


def defrag_units(cluster: ClusterSettings, paths: Paths) -> tuple[str, str]:
    """The service that runs the defragmentation script, and the timer that runs it on etcd:defragSchedule."""
    service = render_template("etcd-defrag.service.j2", cluster_name=cluster.name, script=paths.script("etcd-defrag"),
                              metadata_addresses=METADATA_ADDRESSES)
    return service, render_template("etcd-defrag.timer.j2", cluster_name=cluster.name,
                                    schedule=cluster.defrag_schedule)


# How often a member looks for a grown data volume: EBS grows in minutes, and growing xfs is a no-op otherwise.
GROW_CHECK_MINUTES = 15


def grow_units(cluster: ClusterSettings, paths: Paths) -> tuple[str, str]:
    """The service that grows the data file system to its volume, and the timer that runs it."""
    service = render_template("etcd-grow.service.j2", cluster_name=cluster.name, data_mount=paths.data_mount,
                              bootstrap_script=paths.bootstrap_script)
    timer = render_template("etcd-grow.timer.j2", cluster_name=cluster.name, interval_minutes=GROW_CHECK_MINUTES)
    return service, timer


@dataclass(frozen=True)
class WrittenFile:
    path: str
    content: str
    permissions: str = "0644"
    owner: str = "root:root"


def configuration_files(cluster: ClusterSettings, member: MemberPlan, paths: Paths) -> list[WrittenFile]:
    """etcd's configuration, to bootstrap and to rejoin: the same on AWS and in the sandbox."""
    return [
        WrittenFile(paths.config_file, to_yaml(etcd_config(cluster, member, paths))),
        WrittenFile(paths.join_config_file, to_yaml(etcd_config(cluster, member, paths, joining=True))),
    ]


def day2_scripts(cluster: ClusterSettings, member: MemberPlan, paths: Paths,
                 etcd_user: str = "etcd") -> list[WrittenFile]:
    """The scripts a member ships for its operators: the same on AWS and in the sandbox."""
    return [
        WrittenFile(paths.script("etcd-join"), join_script(cluster, member, paths), permissions="0755"),
        WrittenFile(paths.script("etcd-backup"), backup_script(cluster, member, paths), permissions="0755"),
        WrittenFile(paths.script("etcd-restore"), restore_script(cluster, member, paths, etcd_user),
                    permissions="0755"),
        WrittenFile(paths.script("etcd-ctl"), ctl_script(cluster, member, paths), permissions="0755"),
        WrittenFile(paths.script("etcd-snapshots"), snapshots_script(cluster, member, paths), permissions="0755"),
        WrittenFile(paths.script("etcd-defrag"), defrag_script(cluster, member, paths), permissions="0755"),
    ]


def member_files(cluster: ClusterSettings, member: MemberPlan, paths: Paths, boot: BootstrapSettings,
                 ca_cert_pem: str) -> list[WrittenFile]:
    backup_service, backup_timer = backup_units(cluster, paths)
    grow_service, grow_timer = grow_units(cluster, paths)
    metrics_service, metrics_timer = metrics_units(cluster, paths)
    defrag_service, defrag_timer = defrag_units(cluster, paths)
    return [
        *configuration_files(cluster, member, paths),
        WrittenFile(paths.ca_file, ca_cert_pem),
        WrittenFile(paths.unit("etcd.service"), systemd_unit(cluster, member, paths)),
        WrittenFile(paths.unit("etcd-backup.service"), backup_service),
        WrittenFile(paths.unit("etcd-backup.timer"), backup_timer),
        WrittenFile(paths.unit("etcd-grow.service"), grow_service),
        WrittenFile(paths.unit("etcd-grow.timer"), grow_timer),
        WrittenFile(paths.unit("etcd-metrics.service"), metrics_service),
        WrittenFile(paths.unit("etcd-metrics.timer"), metrics_timer),
        WrittenFile(paths.unit("etcd-defrag.service"), defrag_service),
        WrittenFile(paths.unit("etcd-defrag.timer"), defrag_timer),
        WrittenFile(paths.bootstrap_script, bootstrap_script(cluster, member, paths, boot), permissions="0755"),
        *day2_scripts(cluster, member, paths),
        WrittenFile(paths.script("etcd-metrics"), metrics_script(cluster, member, paths), permissions="0755"),
    ]


def user_data(cluster: ClusterSettings, member: MemberPlan, paths: Paths, boot: BootstrapSettings,
              ca_cert_pem: str) -> str:
    """The member's #cloud-config: public material only; the member key stays in SSM."""
    files = member_files(cluster, member, paths, boot, ca_cert_pem)
    document = render_template(
        "cloud-config.yaml.j2",
        member_name=member.name,
        cluster_name=cluster.name,
        files=files,
        bootstrap_script=paths.bootstrap_script,
    )
    _check_round_trip(document, files)
    size = len(gzip.compress(document.encode(), mtime=0))
    if size > USER_DATA_LIMIT:
        raise ValueError(f"user_data of {member.name} is {size} bytes compressed; EC2 allows {USER_DATA_LIMIT}")
    return document


def compress(document: str) -> str:
    """user_data as EC2 takes it: gzip (with a fixed timestamp, so renders repeat), then base64."""
    return base64.b64encode(gzip.compress(document.encode(), mtime=0)).decode()


def decompress(user_data_base64: str) -> str:
    return gzip.decompress(base64.b64decode(user_data_base64)).decode()


def _check_round_trip(document: str, files: list[WrittenFile]) -> None:
    """Every body must come back byte for byte when cloud-init parses the document."""
    parsed = yaml.safe_load(document)
    written = [(f["path"], f["content"], f["permissions"], f["owner"]) for f in parsed["write_files"]]
    expected = [(f.path, f.content, f.permissions, f.owner) for f in files]
    if written != expected:
        raise ValueError("rendered cloud-config does not parse back to the files it was given")

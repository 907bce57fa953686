"""The pure renderers: configuration as data, YAML that survives any body, templates that refuse gaps."""

from __future__ import annotations

import base64
import random
import textwrap

import jinja2
import pytest
import yaml

from etcd_stack.addressing import MemberPlan
from etcd_stack.config import Bootstrap, EtcdVersion
from etcd_stack.member import rendering
from etcd_stack.member.certificates import PEER_NAME
from etcd_stack.member.rendering import (
    GIB,
    BackupSettings,
    BootstrapSettings,
    ClusterSettings,
    MetricsSettings,
    Paths,
)

MEMBERS = tuple(MemberPlan(i, f"etcd-{i}", f"etcd-{i}.etcd.internal", f"10.0.{64 * i}.10", f"eu-west-2{'abc'[i]}", i)
                for i in range(3))
BOOT = BootstrapSettings(sha256={"amd64": "a" * 64}, region="eu-west-2", key_parameter="/etcd/etcd-0/tls/key",
                         cert_parameter="/etcd/etcd-0/tls/cert", ca_parameter="/etcd/tls/ca-bundle",
                         volume_id="vol-0123456789abcdef0")


def settings(version=(3, 6, 14), bootstrap=Bootstrap.STATIC, members=MEMBERS, quota_backend_bytes=8 * GIB,
             **extra) -> ClusterSettings:
    return ClusterSettings(name="etcd", token="etcd-prod", version=EtcdVersion(*version), bootstrap=bootstrap,
                           members=members, heartbeat_ms=100, election_ms=1000, quota_backend_bytes=quota_backend_bytes,
                           backup=BackupSettings("s3://etcd-backup-1a2b3c/etcd", 60, "eu-west-2"),
                           metrics=MetricsSettings("etcd-aws/prod/etcd"), **extra)


AWKWARD = [
    "plain", "0644", "yes", "null", "- not a list", "key: value", "# not a comment", "  leading spaces",
    "trailing spaces   ", "quote ' and \" both", "line one\nline two\n", "no final newline\nsecond",
    "tabs\tinside\n", "---\ndocument marker\n", "ünïcödé ✓\n", "", "\n\nblank lines first\n", "a\n  indented\n",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_any_body_comes_back_byte_for_byte_from_yaml(text):
    document = f"outer:\n  content: {rendering.yaml_value(text, 4)}\n  after: 1\n"
    assert yaml.safe_load(document) == {"outer": {"content": text, "after": 1}}


def test_multi_line_bodies_are_literal_blocks():
    assert rendering.yaml_value("a\nb\n", 2) == "|\n    a\n    b"


def test_templates_refuse_a_missing_value():
    with pytest.raises(jinja2.UndefinedError):
        rendering.render_template("etcd.service.j2", member_name="etcd-0")


def test_quota_is_eight_gib_or_half_the_volume():
    assert rendering.quota_backend_bytes(100) == 8 * GIB
    assert rendering.quota_backend_bytes(10) == 5 * GIB


@pytest.mark.parametrize("version", [(3, 4, 37), (3, 5, 27), (3, 6, 14), (3, 7, 1)], ids=lambda v: f"{v[0]}.{v[1]}")
def test_a_configured_quota_reaches_every_lines_configuration(version):
    quota = rendering.quota_backend_bytes(100, 32 * 1024**2)
    assert quota == 32 * 1024**2
    cluster = settings(version=version, quota_backend_bytes=quota)
    assert rendering.etcd_config(cluster, MEMBERS[0], Paths())["quota-backend-bytes"] == quota


def test_the_defrag_timer_fires_on_the_configured_schedule_and_runs_the_shipped_script():
    service, timer = rendering.defrag_units(settings(defrag_schedule="Mon..Fri 02:15"), Paths())
    assert "OnCalendar=Mon..Fri 02:15" in timer.splitlines()
    assert "ExecStart=/usr/local/sbin/etcd-defrag --if-fragmented" in service.splitlines()
    _, default = rendering.defrag_units(settings(), Paths())
    assert "OnCalendar=Sun *-*-* 03:30:00" in default.splitlines()


def test_static_config_lists_every_member_and_discovery_config_none():
    static = rendering.etcd_config(settings(), MEMBERS[1], Paths())
    assert static["initial-cluster"] == (
        "etcd-0=https://etcd-0.etcd.internal:2380,etcd-1=https://etcd-1.etcd.internal:2380,"
        "etcd-2=https://etcd-2.etcd.internal:2380")
    found = rendering.etcd_config(settings(bootstrap=Bootstrap.DISCOVERY, discovery_url="https://d.example/t"),
                                  MEMBERS[1], Paths())
    assert found["discovery"] == "https://d.example/t"
    assert "initial-cluster" not in found and "initial-cluster-token" not in found


def test_tls_is_mutual_on_both_ports_and_never_automatic():
    config = rendering.etcd_config(settings(), MEMBERS[0], Paths())
    mutual = {"cert-file": "/etc/etcd/pki/member.crt", "key-file": "/etc/etcd/pki/member.key",
              "trusted-ca-file": "/etc/etcd/pki/ca.crt", "client-cert-auth": True, "auto-tls": False}
    assert config["client-transport-security"] == mutual
    assert config["peer-transport-security"] == {**mutual, "allowed-hostname": [PEER_NAME]}
    assert config["listen-client-urls"] == "https://10.0.0.10:2379,https://127.0.0.1:2379"
    assert config["listen-metrics-urls"] == "http://10.0.0.10:2381,http://127.0.0.1:2381"
    assert config["advertise-client-urls"] == "https://etcd-0.etcd.internal:2379"


@pytest.mark.parametrize("version", [(3, 4, 27), (3, 5, 1), (3, 5, 14)])
def test_lines_whose_config_file_has_no_pin_key_pin_peers_through_the_go_field(version):
    config = rendering.etcd_config(settings(version=version), MEMBERS[0], Paths())
    assert config["PeerTLSInfo"] == {"AllowedHostname": PEER_NAME}
    assert "allowed-hostname" not in config["peer-transport-security"]


@pytest.mark.parametrize("version", [(3, 5, 15), (3, 5, 27), (3, 6, 14), (3, 7, 1)])
def test_lines_with_the_pin_key_use_it_and_not_the_go_field(version):
    config = rendering.etcd_config(settings(version=version), MEMBERS[0], Paths())
    assert config["peer-transport-security"]["allowed-hostname"] == [PEER_NAME]
    assert "PeerTLSInfo" not in config and "allowed-hostname" not in config["client-transport-security"]


def test_loopback_members_do_not_also_claim_127_0_0_1():
    member = MemberPlan(0, "etcd-0", "127.0.1.10", "127.0.1.10", "local", 0)
    config = rendering.etcd_config(settings(members=(member,)), member, Paths())
    assert config["listen-client-urls"] == "https://127.0.1.10:2379"


@pytest.mark.parametrize(("version", "present", "absent"), [
    ((3, 4, 27), {"enable-grpc-gateway", "experimental-initial-corrupt-check"}, {"feature-gates"}),
    ((3, 5, 27), {"experimental-initial-corrupt-check"}, {"feature-gates", "enable-grpc-gateway"}),
    ((3, 6, 14), {"feature-gates"}, {"experimental-initial-corrupt-check", "enable-grpc-gateway"}),
])
def test_key_set_follows_the_etcd_line(version, present, absent):
    config = rendering.etcd_config(settings(version=version), MEMBERS[0], Paths())
    assert present <= set(config) and not absent & set(config)


def test_user_data_that_would_exceed_ec2_limit_compressed_is_refused():
    noise = base64.b64encode(random.Random(7).randbytes(16 * 1024)).decode()
    huge_ca = "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(noise, 64)) + "\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match="compressed; EC2 allows 16384"):
        rendering.user_data(settings(), MEMBERS[0], Paths(), BOOT, huge_ca)


def test_user_data_writes_every_file_and_runs_the_script():
    document = yaml.safe_load(rendering.user_data(settings(), MEMBERS[0], Paths(), BOOT, "CA\n"))
    files = {f["path"]: f for f in document["write_files"]}
    assert list(files) == [
        "/etc/etcd/etcd.yaml", "/etc/etcd/etcd-join.yaml", "/etc/etcd/pki/ca.crt", "/etc/systemd/system/etcd.service",
        "/etc/systemd/system/etcd-backup.service", "/etc/systemd/system/etcd-backup.timer",
        "/etc/systemd/system/etcd-grow.service", "/etc/systemd/system/etcd-grow.timer",
        "/etc/systemd/system/etcd-metrics.service", "/etc/systemd/system/etcd-metrics.timer",
        "/etc/systemd/system/etcd-defrag.service", "/etc/systemd/system/etcd-defrag.timer",
        "/usr/local/sbin/etcd-bootstrap", "/usr/local/sbin/etcd-join", "/usr/local/sbin/etcd-backup",
        "/usr/local/sbin/etcd-restore", "/usr/local/sbin/etcd-ctl", "/usr/local/sbin/etcd-snapshots",
        "/usr/local/sbin/etcd-defrag", "/usr/local/sbin/etcd-metrics"]
    assert {path for path, f in files.items() if f["permissions"] == "0755"} == {
        path for path in files if path.startswith("/usr/local/sbin/")}
    assert document["runcmd"] == [["/usr/local/sbin/etcd-bootstrap"]]


def test_the_script_finds_the_volume_by_its_id():
    script = rendering.bootstrap_script(settings(), MEMBERS[0], Paths(), BOOT)
    assert "readonly NVME_DEVICE=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0" in script


def test_compressed_user_data_comes_back_and_repeats():
    document = rendering.user_data(settings(), MEMBERS[0], Paths(), BOOT, "CA\n")
    assert rendering.decompress(rendering.compress(document)) == document
    assert rendering.compress(document) == rendering.compress(document)
    assert len(base64.b64decode(rendering.compress(document))) < len(document) / 2


def test_snapshots_are_staged_on_the_data_volume_never_in_tmp():
    cluster, paths = settings(), Paths()
    # The timer's backup runs as etcd under a read-only root: it stages in a state directory systemd makes for it
    # on the data volume. The restore runs as root over Run Command and stages beside the data directory.
    backup = rendering.backup_script(cluster, MEMBERS[0], paths)
    service, _ = rendering.backup_units(cluster, paths)
    assert "readonly STAGING_DIR=/var/lib/etcd/backup-staging\n" in backup
    assert "StateDirectory=etcd-backup etcd/backup-staging\n" in service
    restore = rendering.restore_script(cluster, MEMBERS[0], paths)
    assert "readonly STAGING_DIR=/var/lib/etcd\n" in restore
    for script, prefix in ((backup, "snapshot."), (restore, ".etcd-restore.")):
        (made,) = [line.strip() for line in script.splitlines() if "mktemp" in line]
        assert made.startswith(f'work=$(mktemp -d "$STAGING_DIR/{prefix}')

"""Every `etcd-stack` verb on members booted as machines, through the machine transport: each runs on a member
exactly what Run Command runs on an instance (the member's shipped scripts, as root, from a service of its own)
against the AWS stand-ins. One fleet; each test leaves it healthy."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from etcd_stack.preview import machines
from etcd_stack.sandbox.gateway import GatewayError
from etcd_stack.sandbox.machines import aws
from tests.machines.conftest import Cluster, render

pytestmark = pytest.mark.machines

QUOTA = 16 * 1024**2
FILL_VALUE = 100_000
MEMBERS = ["etcd-0", "etcd-1", "etcd-2"]


@pytest.fixture(scope="module")
def cluster(boot) -> Cluster:
    started = boot(**{"etcd:quotaBackendBytes": str(QUOTA)})
    started.wait_healthy()
    return started


def etcd_stack(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etcd_stack.cli", *args, "--machines", str(cluster.home)],
                          capture_output=True, text=True, timeout=600, check=False)


def test_status_backup_and_snapshots_from_the_command_line(cluster: Cluster):
    cluster.write({f"kept/{i:02d}": f"value {i}" for i in range(20)})
    status = etcd_stack(cluster, "status")
    assert status.returncode == 0, status
    for name in MEMBERS:
        assert re.search(rf"^\s*{name}\b.*\bhealthy\b", status.stdout, re.M), status.stdout
    taken = etcd_stack(cluster, "backup")
    assert taken.returncode == 0, taken
    (key,) = [k for k in cluster.objects("etcd/")]
    assert f"snapshot s3://{cluster.plan.seed.buckets[0].name}/{key} " in taken.stdout, taken.stdout
    listed = etcd_stack(cluster, "snapshots")
    assert listed.returncode == 0 and listed.stdout.endswith("1 snapshots\n"), listed
    assert key in listed.stdout


def test_refresh_tls_fetches_rotated_keys_one_member_at_a_time(cluster: Cluster):
    rotated = machines.parameters(render(**{"etcd:quotaBackendBytes": str(QUOTA), "etcd:keyGeneration": "2"}))
    changed = [p for p in rotated
               if p.value != next(o.value for o in cluster.plan.seed.parameters if o.name == p.name)]
    assert changed, "a new key generation changes the members' keys"

    def store() -> None:
        ssm = aws.client("ssm", cluster.plan.region)
        for parameter in changed:
            ssm.put_parameter(Name=parameter.name, Type=parameter.type, Value=parameter.value, Overwrite=True)

    def member_keys() -> dict[str, str]:
        return {name: cluster.sh(name, "cat /etc/etcd/pki/member.key").stdout.strip() for name in MEMBERS}

    old_keys, before = member_keys(), cluster.ids()
    cluster.in_world(store)
    result = etcd_stack(cluster, "refresh-tls")
    assert result.returncode == 0, result
    for name in MEMBERS:
        assert f"  {name}  new TLS files, restarted, healthy" in result.stdout, result.stdout
    assert cluster.ids() == before
    # Each member now holds the key of the new generation, the one the stack stored for it.
    new_keys, stored_values = member_keys(), {p.value.strip() for p in changed}
    for name in MEMBERS:
        assert new_keys[name] != old_keys[name] and new_keys[name] in stored_values, name
    again = etcd_stack(cluster, "refresh-tls")
    assert again.returncode == 0 and again.stdout.count("TLS files unchanged, healthy") == 3, again


def test_defrag_defragments_every_member_the_leader_last(cluster: Cluster):
    result = etcd_stack(cluster, "defrag")
    assert result.returncode == 0, result
    assert result.stdout.endswith("defragmented 3 members, the leader last\n"), result.stdout


def test_replace_member_rejoins_it_afresh_under_a_new_id(cluster: Cluster):
    before = cluster.ids()
    result = etcd_stack(cluster, "replace-member", "--member", "etcd-1")
    assert result.returncode == 0, result
    assert "added as a learner" in result.stdout and "promoted to a voting member" in result.stdout, result.stdout
    after = cluster.ids()
    assert after["etcd-1"] != before["etcd-1"]
    assert {k: after[k] for k in ("etcd-0", "etcd-2")} == {k: before[k] for k in ("etcd-0", "etcd-2")}
    cluster.wait_healthy()
    assert cluster.stored("kept/", "etcd-1") == cluster.stored("kept/", "etcd-0")
    moved = cluster.sh("etcd-1", "ls -d /var/lib/etcd/data.replaced-*").stdout.split()
    assert len(moved) == 1, moved


def test_recover_space_after_a_full_quota(cluster: Cluster):
    def fill(gateway: Any) -> None:
        for n in range(2 * QUOTA // FILL_VALUE):
            gateway.put(cluster.addresses["etcd-0"], f"fill/{n % 8}", f"{n:06d}".ljust(FILL_VALUE, "x"))

    with pytest.raises(GatewayError, match="database space exceeded"):
        cluster.with_gateway(fill)
    result = etcd_stack(cluster, "recover-space")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("alarms: NOSPACE"), lines
    assert lines[-2:] == ["alarms: none; a write was taken again",
                          "space recovered: 3 members defragmented, the alarm disarmed, writes taken"], lines
    cluster.write({"after/recovery": "taken"})


def test_restore_brings_back_the_snapshot_in_a_new_cluster(cluster: Cluster):
    (key,) = [k for k in cluster.objects("etcd/")]
    kept = cluster.stored("kept/")
    assert len(kept) == 20
    before = cluster.ids()
    result = etcd_stack(cluster, "restore", "--snapshot", key.rsplit("/", 1)[1])
    assert result.returncode == 0, result
    assert "restored: 3 members healthy, a new cluster (restore-" in result.stdout, result.stdout
    cluster.wait_healthy()
    assert cluster.stored("kept/") == kept
    # Written after the snapshot: gone with the old cluster.
    assert cluster.stored("after/") == {}
    assert set(cluster.ids()) == set(before) and cluster.ids() != before
    for name in MEMBERS:
        active = cluster.enter(name, ["systemctl", "is-active", "etcd.service", "etcd-backup.timer"]).stdout.split()
        assert active == ["active", "active"], (name, active)

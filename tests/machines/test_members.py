"""Three members booted from their user_data, run by systemd: the cluster they form, the units the user_data
enables, the scheduled jobs started by systemd itself, and what each unit may reach."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from tests.machines.conftest import Cluster

pytestmark = pytest.mark.machines

MEMBERS = ("etcd-0", "etcd-1", "etcd-2")
TIMERS = ("etcd-backup.timer", "etcd-grow.timer", "etcd-metrics.timer", "etcd-defrag.timer")
METADATA = "169.254.169.254"


@pytest.fixture(scope="module")
def cluster(boot) -> Cluster:
    started = boot()
    started.wait_healthy()
    return started


def leader(cluster: Cluster) -> str:
    def ask() -> str:
        gateway = cluster.gateway()
        try:
            statuses = {name: gateway.status(address) for name, address in cluster.addresses.items()}
        finally:
            gateway.close()
        (name,) = [name for name, status in statuses.items() if status["member_id"] == status["leader"]]
        return name

    return cluster.in_world(ask)


def test_members_boot_from_their_user_data_and_form_the_cluster(cluster: Cluster):
    for name in MEMBERS:
        status = json.loads(cluster.enter(name, ["cloud-init", "status", "--format=json"]).stdout)
        assert status["status"] == "done", (name, status)
        assert status["errors"] == [], (name, status["errors"])
        assert f"etcd member {name} started" in cluster.journal(name, "cloud-final.service"), name
    members = cluster.members()
    assert sorted(m["name"] for m in members) == list(MEMBERS)
    assert not any(m.get("isLearner") for m in members)
    # Each member advertises its name in the private zone, and the zone answers with its planned address.
    for member in members:
        (url,) = member["clientURLs"]
        host = url.removeprefix("https://").removesuffix(":2379")
        assert cluster.plan.hosts[host] == cluster.addresses[member["name"]], member


def test_every_unit_the_user_data_enables_runs_or_waits_for_its_timer(cluster: Cluster):
    for name in MEMBERS:
        states = cluster.enter(name, ["systemctl", "is-active", "etcd.service", *TIMERS]).stdout.split()
        assert states == ["active"] * (1 + len(TIMERS)), (name, states)
        failed = cluster.enter(name, ["systemctl", "list-units", "--failed", "--plain", "--no-legend"]).stdout
        assert failed.strip() == "", (name, failed)


def test_the_scheduled_backup_runs_under_systemd_on_every_member_and_only_the_leader_uploads(cluster: Cluster):
    before = set(cluster.objects())
    elected = leader(cluster)
    for name in MEMBERS:
        result = cluster.sh(name, "systemctl start etcd-backup.service; systemctl show etcd-backup.service "
                                  "--property=Result --value")
        assert result.returncode == 0 and result.stdout.strip() == "success", (name, result, cluster.journal(
            name, "etcd-backup.service")[-2000:])
    new = {key: head for key, head in cluster.objects().items() if key not in before}
    assert len(new) == 1, new
    ((key, head),) = new.items()
    assert re.fullmatch(rf"etcd/\d{{8}}T\d{{6}}Z-{elected}\.db", key), key
    # The snapshot carries its SHA-256; the bytes in the bucket have it.
    body = cluster.in_world(lambda: _get(cluster, key))
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    for name in MEMBERS:
        if name != elected:
            assert "is not the leader" in cluster.journal(name, "etcd-backup.service"), name
    # Nothing is left where the snapshot was staged.
    staged = cluster.sh(elected, "ls -A /var/lib/etcd/backup-staging").stdout.split()
    assert staged == [".lock"], staged


def _get(cluster: Cluster, key: str) -> bytes:
    from etcd_stack.sandbox.machines import aws

    (bucket,) = [b.name for b in cluster.plan.seed.buckets]
    return aws.client("s3", cluster.plan.region).get_object(Bucket=bucket, Key=key)["Body"].read()


def test_the_backup_timer_fires_by_itself(cluster: Cluster):
    elected = leader(cluster)
    before = len(cluster.objects())
    # A drop-in the test adds (named as such): every 20 s instead of the interval, no random delay.
    shortened = ("mkdir -p /etc/systemd/system/etcd-backup.timer.d && printf '[Timer]\\nOnBootSec=\\n"
                 "OnUnitActiveSec=\\nOnActiveSec=1s\\nOnUnitActiveSec=20s\\nRandomizedDelaySec=0\\n' "
                 ">/etc/systemd/system/etcd-backup.timer.d/90-test-shortened.conf && systemctl daemon-reload && "
                 "systemctl restart etcd-backup.timer")
    for name in MEMBERS:
        assert cluster.sh(name, shortened).returncode == 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(cluster.objects()) < before + 2:
        time.sleep(2)
    uploaded = len(cluster.objects()) - before
    assert uploaded >= 2, (uploaded, cluster.journal(elected, "etcd-backup.service")[-2000:])
    runs = cluster.journal(elected, "etcd-backup.service").count("Finished etcd-backup.service")
    assert runs >= 2


def test_the_member_publishes_its_metrics_and_the_other_jobs_succeed(cluster: Cluster):
    from etcd_stack.sandbox.machines import aws

    for name in MEMBERS:
        for unit in ("etcd-metrics.service", "etcd-grow.service", "etcd-defrag.service"):
            result = cluster.sh(name, f"systemctl start {unit}; systemctl show {unit} --property=Result --value")
            assert result.stdout.strip() == "success", (name, unit, cluster.journal(name, unit)[-2000:])

    def metrics() -> set[str]:
        cloudwatch = aws.client("cloudwatch", cluster.plan.region)
        return {m["MetricName"] for m in cloudwatch.list_metrics()["Metrics"]}

    assert cluster.in_world(metrics), "the metrics reached CloudWatch"


def test_the_etcd_unit_cannot_reach_the_metadata_service_while_the_backup_unit_can(cluster: Cluster):
    # From etcd.service's own cgroup, where systemd attached the unit's IPAddressDeny= programs.
    token = ("curl --silent --max-time 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
             f"http://{METADATA}/latest/api/token")
    join = "echo $$ > /sys/fs/cgroup/system.slice/etcd.service/cgroup.procs"
    in_etcd = cluster.enter("etcd-0", ["bash", "-c", f"{join} && exec {token}"])
    assert in_etcd.returncode == 28, in_etcd  # curl: timed out (the packets are dropped)
    # The same request from a plain service of the machine is answered.
    plain = cluster.sh("etcd-0", token)
    assert plain.returncode == 0 and plain.stdout.strip(), plain
    # The backup unit's AWS CLI has no credentials but the metadata service's: its upload above proves it reached
    # them; here, under the unit's own properties, the token request is answered too.
    backup = cluster.sh("etcd-0", "systemctl show etcd-backup.service --property=IPAddressDeny --value")
    assert METADATA not in backup.stdout, backup.stdout


def test_the_load_balancer_spreads_clients_and_admits_only_healthy_members(cluster: Cluster):
    from etcd_stack.sandbox.machines import balancer

    home = cluster.home
    client = next(name for name in cluster.plan.hosts if name.startswith("client."))
    ask = ("for n in $(seq 12); do curl --silent --show-error --max-time 5 --cacert /etc/etcd/pki/ca.crt "
           "--cert /etc/etcd/pki/member.crt --key /etc/etcd/pki/member.key -X POST -d '{}' "
           f"https://{client}:2379/v3/maintenance/status; echo; done")

    def answered_by() -> list[str]:
        result = cluster.sh("etcd-0", ask)
        assert result.returncode == 0, result
        return [json.loads(line)["header"]["member_id"] for line in result.stdout.splitlines() if line.strip()]

    def admitted(expected: list[str]) -> list[str]:
        # A target is admitted after two good checks 10 s apart, and dropped after two failed ones.
        deadline = time.monotonic() + 60
        while balancer.targets_up(home) != expected and time.monotonic() < deadline:
            time.sleep(1)
        return balancer.targets_up(home)

    ids = {member["ID"]: member["name"] for member in cluster.members()}
    assert admitted(list(MEMBERS)) == list(MEMBERS)
    # New connections go to every member, as the NLB spreads flows over its healthy targets.
    assert {ids[member] for member in answered_by()} == set(MEMBERS)
    stopped = "etcd-2"
    assert cluster.sh(stopped, "systemctl stop etcd.service").returncode == 0
    try:
        assert admitted(["etcd-0", "etcd-1"]) == ["etcd-0", "etcd-1"]
        # Every request is answered, none by the stopped member.
        assert {ids[member] for member in answered_by()} == {"etcd-0", "etcd-1"}
    finally:
        assert cluster.sh(stopped, "systemctl start etcd.service").returncode == 0
    assert admitted(list(MEMBERS)) == list(MEMBERS)
    cluster.wait_healthy()

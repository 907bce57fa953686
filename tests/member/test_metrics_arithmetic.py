"""The metrics publisher's arithmetic on made-up /metrics text, compared with what Prometheus would
answer (histogram_quantile interpolates linearly inside the bucket; increase() survives a restart)."""

from __future__ import annotations

import pytest

from etcd_stack.config import Bootstrap, EtcdVersion
from etcd_stack.member import rendering
from etcd_stack.member.rendering import BackupSettings, ClusterSettings, MetricsSettings, Paths
from etcd_stack.sandbox.local import local_members


@pytest.fixture(scope="module")
def publisher() -> dict:
    member = local_members(1)[0]
    cluster = ClusterSettings(name="etcd", token="t", version=EtcdVersion(3, 6, 14), bootstrap=Bootstrap.STATIC,
                              members=(member,), heartbeat_ms=100, election_ms=1000, quota_backend_bytes=1000,
                              backup=BackupSettings("file:///b", 60), metrics=MetricsSettings("etcd-aws/t/etcd"))
    namespace: dict = {"__name__": "etcd_metrics"}
    exec(compile(rendering.metrics_script(cluster, member, Paths()), "etcd-metrics", "exec"), namespace)
    return namespace


def exposition(fsync: list[tuple[str, int]], leader_changes: int, db_size: int = 250) -> str:
    lines = ["# HELP etcd_server_has_leader Whether or not a leader exists.", "etcd_server_has_leader 1",
             f"etcd_server_leader_changes_seen_total {leader_changes}", f"etcd_mvcc_db_total_size_in_bytes {db_size}",
             "etcd_server_quota_backend_bytes 1000", 'etcd_server_version{server_version="3.6.14"} 1']
    lines += [f'etcd_disk_wal_fsync_duration_seconds_bucket{{le="{le}"}} {count}' for le, count in fsync]
    return "\n".join(lines) + "\n"


def samples(publisher: dict, text: str, directory) -> dict:
    """The text as the publisher reads it from etcd's /metrics."""
    page = directory / "metrics"
    page.write_text(text)
    return publisher["scrape"](page.as_uri())


def test_p99_interpolates_inside_the_bucket_as_prometheus_does(publisher):
    # 100 observations: 50 up to 1 ms, 49 more up to 2 ms, 1 up to 4 ms. Rank 99 is the last of the 2 ms bucket.
    now = [(0.001, 50.0), (0.002, 99.0), (0.004, 100.0), (float("inf"), 100.0)]
    assert publisher["p99"](now, []) == pytest.approx(0.002)
    # Since a run that had seen the first 50: of the 50 newer ones, 49 are in the 2 ms bucket and one in the 4 ms
    # bucket, so rank 49.5 lies halfway into the 4 ms bucket.
    before = [["0.001", 50.0], ["0.002", 50.0], ["0.004", 50.0], ["inf", 50.0]]
    assert publisher["p99"](now, before) == pytest.approx(0.002 + 0.002 * 0.5)
    assert publisher["p99"](now, [[str(b), c] for b, c in now]) is None


def test_counters_become_increases_and_survive_a_restart(publisher, tmp_path):
    fsync = [("0.001", 10), ("+Inf", 10)]
    measure = publisher["measure"]
    first, state = measure(samples(publisher, exposition(fsync, 3), tmp_path), set(), {})
    assert first["LeaderChanges"] == 0 and first["DbQuotaUsed"] == 25.0
    second, state = measure(samples(publisher, exposition(fsync, 5), tmp_path), {"NOSPACE"}, state)
    assert second["LeaderChanges"] == 2 and second["NospaceAlarm"] == 1 and second["CorruptAlarm"] == 0
    # etcd restarted: its counter starts again from zero, and what it counted since is the increase.
    third, _ = measure(samples(publisher, exposition(fsync, 1), tmp_path), None, state)
    assert third["LeaderChanges"] == 1
    assert "NospaceAlarm" not in third


def test_the_publishers_parser_reads_labels_and_values(publisher, tmp_path):
    parsed = samples(publisher, exposition([("0.001", 7), ("+Inf", 9)], 4), tmp_path)
    assert parsed[("etcd_server_leader_changes_seen_total", ())] == 4
    assert parsed[("etcd_server_version", (("server_version", "3.6.14"),))] == 1
    assert publisher["buckets"](parsed, "etcd_disk_wal_fsync_duration_seconds") == [(0.001, 7.0), (float("inf"), 9.0)]

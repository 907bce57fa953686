"""What each member publishes to CloudWatch from etcd's /metrics, and where: the one catalogue the
publisher, the alarms, the dashboard and the tests share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # a CloudWatch StandardUnit
    source: str  # what on /metrics (or etcdctl) it comes from


METRICS: tuple[Metric, ...] = (
    Metric("HasLeader", "None", "etcd_server_has_leader"),
    Metric("LeaderChanges", "Count", "increase of etcd_server_leader_changes_seen_total since the last run"),
    Metric("WalFsyncP99", "Seconds", "p99 of etcd_disk_wal_fsync_duration_seconds since the last run"),
    Metric("BackendCommitP99", "Seconds", "p99 of etcd_disk_backend_commit_duration_seconds since the last run"),
    Metric("DbSize", "Bytes", "etcd_mvcc_db_total_size_in_bytes"),
    Metric("DbQuotaUsed", "Percent", "etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes"),
    Metric("ProposalsFailed", "Count", "increase of etcd_server_proposals_failed_total since the last run"),
    Metric("ProposalsPending", "Count", "etcd_server_proposals_pending"),
    Metric("IsLearner", "None", "etcd_server_is_learner"),
    Metric("NospaceAlarm", "None", "1 while `etcdctl alarm list` shows NOSPACE"),
    Metric("CorruptAlarm", "None", "1 while `etcdctl alarm list` shows CORRUPT"),
)
METRIC_NAMES = tuple(metric.name for metric in METRICS)
# Dimensions of every data point; the namespace already carries the cluster and the stack.
MEMBER_DIMENSION = "Member"

"""What each member publishes to CloudWatch from etcd's /metrics, and where: the one catalogue the
publisher, the alarms, the dashboard and the tests share."""

from __future__ import annotations

import hashlib
import re
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


def scoped_name(cluster_name: str, stack: str, suffix: str, limit: int = 255, separator: str = "-") -> str:
    """A name unique per cluster and stack within AWS's `limit`; a long stack name is shortened to a digest
    so that two stacks never share the name."""
    digest = hashlib.sha256(stack.encode()).hexdigest()
    safe_stack = re.sub(r"[^A-Za-z0-9_-]", "_", stack)
    # `dev.v2` and `dev_v2` are two stacks: a rewritten name keeps a digest of the original.
    if safe_stack != stack:
        safe_stack = f"{safe_stack}-{digest[:6]}"
    name = separator.join((cluster_name, safe_stack, suffix))
    if len(name) <= limit:
        return name
    return separator.join((cluster_name, digest[:12], suffix))[:limit]


def metric_namespace(cluster_name: str, stack: str) -> str:
    """The member roles may put data only here (cloudwatch:namespace), so no stack can feed another's alarms.
    Pulumi stack names (letters, digits, `-_.`) are all characters CloudWatch allows in a namespace."""
    return f"etcd-aws/{cluster_name}/{stack}"

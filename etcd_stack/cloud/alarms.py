"""CloudWatch alarms: a member out of the load balancer, snapshots that stopped arriving in the bucket,
and per member what etcd says about itself (the publisher's figures; thresholds from etcd's
Prometheus alert rules, contrib/mixin/alerts/alerts.libsonnet, where they have one)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.backup import ARRIVAL_METRIC, ARRIVAL_NAMESPACE
from etcd_stack.cloud.iam import policy
from etcd_stack.member.metrics import MEMBER_DIMENSION
from etcd_stack.naming import scoped_name
from etcd_stack.tags import tagged

DAY, HOUR = 86400, 3600


@dataclass(frozen=True)
class EtcdAlarm:
    name: str
    metric: str
    statistic: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    # Missing data: `breaching` only where silence itself is the failure (no figures from a member).
    missing: str
    why: str


ETCD_ALARMS: tuple[EtcdAlarm, ...] = (
    EtcdAlarm("no-leader", "HasLeader", "Minimum", "LessThanThreshold", 1, 60, 2, "breaching",
              "etcdNoLeader: etcd_server_has_leader == 0 for 1m; silence for 2 minutes counts too"),
    EtcdAlarm("leader-changes", "LeaderChanges", "Sum", "GreaterThanOrEqualToThreshold", 4, 900, 1, "notBreaching",
              "etcdHighNumberOfLeaderChanges: 4 or more leader changes within 15 minutes"),
    EtcdAlarm("wal-fsync", "WalFsyncP99", "Average", "GreaterThanThreshold", 0.5, 300, 2, "notBreaching",
              "etcdHighFsyncDurations: p99 of WAL fsync above 0.5 s for 10m"),
    EtcdAlarm("backend-commit", "BackendCommitP99", "Average", "GreaterThanThreshold", 0.25, 300, 2, "notBreaching",
              "etcdHighCommitDurations: p99 of backend commits above 0.25 s for 10m"),
    EtcdAlarm("quota", "DbQuotaUsed", "Maximum", "GreaterThanThreshold", 95, 300, 2, "notBreaching",
              "etcdDatabaseQuotaLowSpace: the database above 95% of its quota for 10m"),
    EtcdAlarm("failed-proposals", "ProposalsFailed", "Sum", "GreaterThanThreshold", 5 * 900, 900, 1, "notBreaching",
              "etcdHighNumberOfFailedProposals: more than 5 failed proposals a second over 15m"),
    EtcdAlarm("pending-proposals", "ProposalsPending", "Minimum", "GreaterThanThreshold", 5, 300, 2, "notBreaching",
              "no upstream rule: proposals that never drain below 5 for 10m (overload, or commits stuck)"),
    EtcdAlarm("learner", "IsLearner", "Minimum", "GreaterThanOrEqualToThreshold", 1, 900, 2, "notBreaching",
              "no upstream rule: a learner for 30m (etcd-join promotes it once it has caught up)"),
    EtcdAlarm("nospace", "NospaceAlarm", "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 1, "notBreaching",
              "etcd raised NOSPACE and refuses writes until compacted, defragmented and disarmed"),
    EtcdAlarm("corrupt", "CorruptAlarm", "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, 1, "notBreaching",
              "etcd raised CORRUPT: a member's data differs from the others'"),
)


@dataclass(frozen=True)
class AlarmArgs:
    cluster_name: str
    stack: str
    cluster_size: int
    member_names: Sequence[str]
    roles: Sequence[aws.iam.Role]
    metrics_namespace: str
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    backup_interval_minutes: int
    arrival_rule_name: pulumi.Input[str]
    # The backup-age alarm is created after the stack's first arrival (its marker object).
    backup_age_after: Sequence[pulumi.Resource]
    topic_arn: str | None
    tags: Mapping[str, str]


def backup_window(interval_minutes: int) -> tuple[int, int]:
    """(period, evaluation periods) spanning two backup intervals. CloudWatch (PutMetricAlarm, Period):
    period x evaluation periods may reach 7 days with periods of an hour or more, one day below that."""
    window = 2 * interval_minutes * 60
    if window <= DAY:
        return window, 1
    return HOUR, math.ceil(window / HOUR)


class ClusterAlarms(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlarmArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:alarms:ClusterAlarms", name, None, opts)
        self._name, self._args = name, args
        self._actions = [args.topic_arn] if args.topic_arn else []
        self._alarm(
            "healthy-members",
            alarm_description=f"Fewer than {args.cluster_size} etcd members of {args.cluster_name} pass the "
                              "load balancer's health check (/health on 2381)",
            namespace="AWS/NetworkELB", metric_name="HealthyHostCount",
            dimensions={"LoadBalancer": args.load_balancer_arn_suffix, "TargetGroup": args.target_group_arn_suffix},
            statistic="Minimum", period=60, evaluation_periods=3, comparison_operator="LessThanThreshold",
            threshold=args.cluster_size, treat_missing_data="breaching",
        )
        period, periods = backup_window(args.backup_interval_minutes)
        self._alarm(
            "backup-age",
            alarm_description=f"No object reached the backup bucket of {args.cluster_name} ({args.stack}) in "
                              f"{period * periods // 60} minutes (two backup intervals)",
            namespace=ARRIVAL_NAMESPACE, metric_name=ARRIVAL_METRIC, dimensions={"RuleName": args.arrival_rule_name},
            statistic="Sum", period=period, evaluation_periods=periods, datapoints_to_alarm=periods,
            comparison_operator="LessThanThreshold", threshold=1, treat_missing_data="breaching",
            depends_on=list(args.backup_age_after),
        )
        for member in args.member_names:
            for spec in ETCD_ALARMS:
                self._alarm(
                    f"{member}-{spec.name}", alarm_description=f"{member} of {args.cluster_name}: {spec.why}",
                    namespace=args.metrics_namespace, metric_name=spec.metric,
                    dimensions={MEMBER_DIMENSION: member}, statistic=spec.statistic, period=spec.period,
                    evaluation_periods=spec.evaluation_periods, datapoints_to_alarm=spec.evaluation_periods,
                    comparison_operator=spec.comparison, threshold=spec.threshold, treat_missing_data=spec.missing,
                )
        for index, role in enumerate(args.roles):
            # Members publish their figures into the stack's own namespace and nowhere else.
            aws.iam.RolePolicy(
                f"{name}-publish-{index}", role=role.id,
                policy=policy({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                               "Condition": {"StringEquals": {"cloudwatch:namespace": args.metrics_namespace}}}),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})

    def _alarm(self, suffix: str, depends_on: Sequence[pulumi.Resource] = (), **settings) -> None:
        logical = f"{self._name}-{suffix}"
        aws.cloudwatch.MetricAlarm(
            logical,
            name=scoped_name(self._args.stack, self._args.cluster_name, suffix),
            alarm_actions=self._actions,
            ok_actions=self._actions,
            tags=tagged(self._args.tags, logical),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
            **settings,
        )

"""CloudWatch alarms: a member out of the load balancer, and backups that stopped arriving."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.backup import METRIC_NAMESPACE, SNAPSHOT_METRIC
from etcd_stack.tags import tagged


@dataclass(frozen=True)
class AlarmArgs:
    cluster_name: str
    cluster_size: int
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    backup_interval_minutes: int
    topic_arn: str | None
    tags: Mapping[str, str]


def backup_window_seconds(interval_minutes: int) -> int:
    """Two intervals, in whole minutes, within CloudWatch's one-day period limit."""
    return min(2 * interval_minutes * 60, 86400)


class ClusterAlarms(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlarmArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:alarms:ClusterAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        actions = [args.topic_arn] if args.topic_arn else []
        aws.cloudwatch.MetricAlarm(
            f"{name}-healthy-members",
            alarm_description=f"Fewer than {args.cluster_size} etcd members of {args.cluster_name} pass the "
                              "load balancer's health check (/health on 2381)",
            namespace="AWS/NetworkELB",
            metric_name="HealthyHostCount",
            dimensions={"LoadBalancer": args.load_balancer_arn_suffix, "TargetGroup": args.target_group_arn_suffix},
            statistic="Minimum",
            period=60,
            evaluation_periods=3,
            comparison_operator="LessThanThreshold",
            threshold=args.cluster_size,
            treat_missing_data="breaching",
            alarm_actions=actions,
            ok_actions=actions,
            tags=tagged(args.tags, f"{name}-healthy-members"),
            opts=child,
        )
        window = backup_window_seconds(args.backup_interval_minutes)
        aws.cloudwatch.MetricAlarm(
            f"{name}-backup-age",
            alarm_description=f"No snapshot of {args.cluster_name} reached the backup bucket in {window // 60} "
                              "minutes",
            namespace=METRIC_NAMESPACE,
            metric_name=SNAPSHOT_METRIC,
            dimensions={"ClusterName": args.cluster_name},
            statistic="Sum",
            period=window,
            evaluation_periods=1,
            comparison_operator="LessThanThreshold",
            threshold=1,
            treat_missing_data="breaching",
            alarm_actions=actions,
            ok_actions=actions,
            tags=tagged(args.tags, f"{name}-backup-age"),
            opts=child,
        )
        self.register_outputs({})

"""The CloudWatch dashboard an operator opens first: the load balancer's healthy members, snapshots
arriving in the bucket, and per member what etcd says about itself (README: Dashboard)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from etcd_stack.cloud.alarms import ETCD_ALARMS
from etcd_stack.cloud.backup import ARRIVAL_METRIC, ARRIVAL_NAMESPACE
from etcd_stack.member.metrics import MEMBER_DIMENSION
from etcd_stack.naming import scoped_name

# (title, metrics drawn with one line per member, statistic)
ETCD_WIDGETS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Has a leader (1 = yes)", ("HasLeader",), "Minimum"),
    ("Leader changes", ("LeaderChanges",), "Sum"),
    ("WAL fsync p99 (s)", ("WalFsyncP99",), "Average"),
    ("Backend commit p99 (s)", ("BackendCommitP99",), "Average"),
    ("Database size (bytes)", ("DbSize",), "Maximum"),
    ("Database share of its quota (%)", ("DbQuotaUsed",), "Maximum"),
    ("Proposals failed", ("ProposalsFailed",), "Sum"),
    ("Proposals pending", ("ProposalsPending",), "Maximum"),
    ("Learner (1 = yes)", ("IsLearner",), "Maximum"),
    ("NOSPACE and CORRUPT alarms (1 = raised)", ("NospaceAlarm", "CorruptAlarm"), "Maximum"),
)


@dataclass(frozen=True)
class DashboardArgs:
    cluster_name: str
    stack: str
    region: str
    cluster_size: int
    member_names: Sequence[str]
    metrics_namespace: str
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    arrival_rule_name: pulumi.Input[str]
    backup_interval_minutes: int


def _widget(index: int, title: str, metrics: list[list[Any]], region: str, period: int,
            annotations: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    properties: dict[str, Any] = {"title": title, "region": region, "metrics": metrics, "view": "timeSeries",
                                  "period": period}
    if annotations:
        properties["annotations"] = {"horizontal": list(annotations)}
    return {"type": "metric", "x": (index % 2) * 12, "y": (index // 2) * 6, "width": 12, "height": 6,
            "properties": properties}


def _threshold(metric: str) -> list[dict[str, Any]]:
    return [{"label": f"alarm: {spec.name}", "value": spec.threshold} for spec in ETCD_ALARMS
            if spec.metric == metric and spec.comparison.startswith("Greater")]


def dashboard_body(args: DashboardArgs, load_balancer: str, target_group: str, rule_name: str) -> str:
    widgets = [
        _widget(0, "Members healthy in the load balancer",
                [["AWS/NetworkELB", "HealthyHostCount", "LoadBalancer", load_balancer, "TargetGroup", target_group,
                  {"stat": "Minimum"}]], args.region, 60,
                [{"label": "cluster size", "value": args.cluster_size}]),
        _widget(1, "Objects arriving in the backup bucket",
                [[ARRIVAL_NAMESPACE, ARRIVAL_METRIC, "RuleName", rule_name, {"stat": "Sum"}]], args.region,
                args.backup_interval_minutes * 60),
    ]
    for offset, (title, metrics, statistic) in enumerate(ETCD_WIDGETS, start=2):
        lines = [[args.metrics_namespace, metric, MEMBER_DIMENSION, member,
                  {"stat": statistic, "label": f"{member} {metric}"}]
                 for metric in metrics for member in args.member_names]
        annotations = [mark for metric in metrics for mark in _threshold(metric)]
        widgets.append(_widget(offset, title, lines, args.region, 60, annotations))
    return json.dumps({"widgets": widgets}, sort_keys=True)


class ClusterDashboard(pulumi.ComponentResource):
    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("etcd-aws:dashboard:ClusterDashboard", name, None, opts)
        aws.cloudwatch.Dashboard(
            name,
            dashboard_name=scoped_name(args.stack, args.cluster_name, "etcd"),
            dashboard_body=pulumi.Output.all(args.load_balancer_arn_suffix, args.target_group_arn_suffix,
                                             args.arrival_rule_name).apply(
                lambda values: dashboard_body(args, *values)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})

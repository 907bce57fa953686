"""Alarms and the dashboard as the program registers them: every alarm's metric, dimensions, threshold
and action; the backup-age window within CloudWatch's limits; members that can publish only into
their stack's namespace; two stacks that share no alarm data."""

from __future__ import annotations

import json

import pytest

from etcd_stack.cloud.alarms import ETCD_ALARMS, backup_window
from etcd_stack.member.metrics import METRIC_NAMES
from etcd_stack.preview import offline
from tests.cloud.effective_access import Principal, Request, allowed

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "arn:aws:sns:eu-west-2:123456789012:etcd-alarms"
MEMBERS = ("etcd-0", "etcd-1", "etcd-2")


def run(stack: str = "test", **settings: str) -> offline.OfflineRun:
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:backupIntervalMinutes": "30", "etcd:alarmTopicArn": TOPIC,
           **{f"etcd:{key}": value for key, value in settings.items()}}
    return offline.run(raw, stack)


@pytest.fixture(scope="module")
def stack():
    return run()


def alarm(stack, suffix: str) -> dict:
    return stack.named(f"etcd-alarms-{suffix}", ALARM).inputs


def test_every_member_has_an_alarm_on_each_etcd_signal(stack):
    for member in MEMBERS:
        for spec in ETCD_ALARMS:
            inputs = alarm(stack, f"{member}-{spec.name}")
            assert inputs["name"] == f"test-etcd-{member}-{spec.name}"
            assert (inputs["namespace"], inputs["metricName"]) == ("etcd-aws/test/etcd", spec.metric)
            assert inputs["dimensions"] == {"Member": member}
            assert (inputs["statistic"], inputs["comparisonOperator"], inputs["threshold"]) == (
                spec.statistic, spec.comparison, spec.threshold)
            assert inputs["period"] * inputs["evaluationPeriods"] <= 86400
            assert inputs["alarmActions"] == [TOPIC] and inputs["okActions"] == [TOPIC]
    assert {spec.metric for spec in ETCD_ALARMS} == set(METRIC_NAMES) - {"DbSize"}


@pytest.mark.parametrize(("name", "metric", "comparison", "threshold", "window_s"), [
    # etcd-io/etcd contrib/mixin/alerts/alerts.libsonnet
    ("no-leader", "HasLeader", "LessThanThreshold", 1, 120),
    ("leader-changes", "LeaderChanges", "GreaterThanOrEqualToThreshold", 4, 900),
    ("wal-fsync", "WalFsyncP99", "GreaterThanThreshold", 0.5, 600),
    ("backend-commit", "BackendCommitP99", "GreaterThanThreshold", 0.25, 600),
    ("quota", "DbQuotaUsed", "GreaterThanThreshold", 95, 600),
    ("failed-proposals", "ProposalsFailed", "GreaterThanThreshold", 4500, 900),
])
def test_thresholds_follow_etcds_own_alert_rules(stack, name, metric, comparison, threshold, window_s):
    inputs = alarm(stack, f"etcd-1-{name}")
    assert (inputs["metricName"], inputs["comparisonOperator"], inputs["threshold"]) == (metric, comparison,
                                                                                         threshold)
    assert inputs["period"] * inputs["evaluationPeriods"] == window_s
    assert inputs["datapointsToAlarm"] == inputs["evaluationPeriods"]


def test_a_member_that_stops_publishing_counts_as_leaderless(stack):
    assert alarm(stack, "etcd-0-no-leader")["treatMissingData"] == "breaching"
    assert alarm(stack, "etcd-0-wal-fsync")["treatMissingData"] == "notBreaching"


def test_an_alarm_fires_when_nothing_reaches_the_bucket_for_two_intervals(stack):
    inputs = alarm(stack, "backup-age")
    rule = stack.named("etcd-backup-arrivals", "aws:cloudwatch/eventRule:EventRule")
    assert (inputs["namespace"], inputs["metricName"], inputs["statistic"]) == ("AWS/Events", "TriggeredRules", "Sum")
    assert inputs["dimensions"] == {"RuleName": rule.state["name"]}
    assert (inputs["period"], inputs["evaluationPeriods"]) == (3600, 1)
    assert (inputs["comparisonOperator"], inputs["threshold"], inputs["treatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")
    assert inputs["alarmActions"] == [TOPIC]


def test_a_new_stack_counts_its_own_marker_as_the_first_arrival(stack):
    backup_age = stack.named("etcd-alarms-backup-age", ALARM)
    assert "etcd-backup-created" in backup_age.dependencies


@pytest.mark.parametrize(("interval", "period", "periods"), [
    (5, 600, 1), (60, 7200, 1), (720, 86400, 1), (721, 3600, 25), (1440, 3600, 48),
])
def test_the_backup_window_spans_two_intervals_within_cloudwatchs_limits(interval, period, periods):
    assert (period, periods) == backup_window(interval)
    assert period * periods >= 2 * interval * 60
    # PutMetricAlarm: at most 7 days in all; at most one day with periods under an hour.
    assert period * periods <= (604800 if period >= 3600 else 86400)
    assert period % 60 == 0


def test_a_daily_backup_alarms_only_after_two_days(tmp_path):
    inputs = run(backupIntervalMinutes="1440").named("etcd-alarms-backup-age", ALARM).inputs
    assert (inputs["period"], inputs["evaluationPeriods"], inputs["datapointsToAlarm"]) == (3600, 48, 48)


@pytest.mark.parametrize(("namespace", "expected"), [
    ("etcd-aws/test/etcd", True), ("etcd-aws/prod/etcd", False), ("etcd-aws", False), ("AWS/Events", False),
])
def test_members_publish_only_into_their_stacks_namespace_and_not_the_backup_metric(stack, namespace, expected):
    for index in range(3):
        role = stack.named(f"etcd-access-{index}", "aws:iam/role:Role")
        grant = stack.named(f"etcd-alarms-publish-{index}", "aws:iam/rolePolicy:RolePolicy")
        assert grant.inputs["role"] == role.id
        member = Principal.of(role.state["arn"], json.loads(grant.inputs["policy"]))
        request = Request(member, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace})
        assert allowed(request) is expected
    assert alarm(stack, "backup-age")["namespace"] == "AWS/Events"


def test_two_stacks_with_one_cluster_name_share_no_alarm_data():
    def data(run_):
        return {(a.inputs["namespace"], json.dumps(a.inputs["dimensions"], sort_keys=True))
                for a in run_.of_type(ALARM) if a.inputs["namespace"] != "AWS/NetworkELB"}

    def names(run_):
        return {a.inputs["name"] for a in run_.of_type(ALARM)}

    dev, prod = run("dev"), run("prod")
    assert data(dev) and not data(dev) & data(prod)
    assert not names(dev) & names(prod)


def test_alarms_exist_without_a_topic_and_notify_nobody(run_stack):
    alarms = run_stack(bastion=False).of_type(ALARM)
    assert len(alarms) == 2 + 3 * len(ETCD_ALARMS)
    assert all(not a.inputs.get("alarmActions") for a in alarms)


# --- the dashboard --------------------------------------------------------------------------------

def widgets(stack) -> list[dict]:
    (dashboard,) = stack.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == "test-etcd-etcd"
    return json.loads(dashboard.inputs["dashboardBody"])["widgets"]


def test_every_dashboard_widget_draws_a_metric_the_stack_publishes_or_aws_provides(stack):
    balancer = stack.named("etcd-client", "aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    group = stack.named("etcd-client", "aws:lb/targetGroup:TargetGroup").state["arnSuffix"]
    rule = stack.named("etcd-backup-arrivals", "aws:cloudwatch/eventRule:EventRule").state["name"]
    provided = {
        ("AWS/NetworkELB", "HealthyHostCount", ("LoadBalancer", balancer, "TargetGroup", group)),
        ("AWS/Events", "TriggeredRules", ("RuleName", rule)),
    }
    published = {("etcd-aws/test/etcd", metric, ("Member", member)) for metric in METRIC_NAMES for member in MEMBERS}
    drawn = set()
    for widget in widgets(stack):
        assert widget["properties"]["region"] == "eu-west-2"
        for line in widget["properties"]["metrics"]:
            namespace, metric, *dimensions, _options = line
            drawn.add((namespace, metric, tuple(dimensions)))
    assert drawn <= provided | published
    assert drawn == provided | published


def test_dashboard_widgets_do_not_overlap(stack):
    cells = set()
    for widget in widgets(stack):
        mine = {(x, y) for x in range(widget["x"], widget["x"] + widget["width"])
                for y in range(widget["y"], widget["y"] + widget["height"])}
        assert not mine & cells
        cells |= mine


def test_names_stay_within_awss_limits_and_apart_for_long_stack_names():
    from etcd_stack.naming import scoped_name

    first, second = "platform-production-eu-west-2-" + "a" * 40, "platform-production-eu-west-2-" + "b" * 40
    names = {scoped_name(stack, "etcd", "snapshots", limit=64) for stack in (first, second)}
    assert len(names) == 2 and all(len(name) <= 64 for name in names)
    assert scoped_name("dev.v2", "etcd", "etcd") != scoped_name("dev_v2", "etcd", "etcd") == "dev_v2-etcd-etcd"

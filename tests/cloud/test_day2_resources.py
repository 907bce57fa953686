"""The AWS side of day-2 operations, as the program registers it: backups, alarms, the version gate
(the bucket's protections: test_backups.py; the alarms and dashboard: test_monitoring.py)."""

from __future__ import annotations

import pytest

from etcd_stack import upgrade
from etcd_stack.cloud.gates import ClusterRecordProvider
from etcd_stack.config import ConfigError, EtcdVersion
from etcd_stack.preview import offline
from tests.conftest import user_data_of, written_file

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "arn:aws:sns:eu-west-2:123456789012:etcd-alarms"


@pytest.fixture(scope="module")
def stack():
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:backupIntervalMinutes": "30", "etcd:backupRetentionDays": "21", "etcd:alarmTopicArn": TOPIC}
    return offline.run(raw, "test")


def only(run, typ):
    (resource,) = run.of_type(typ)
    return resource


def bucket_of(run):
    return only(run, "aws:s3/bucket:Bucket")


def test_members_back_up_to_the_bucket_on_their_timer(stack):
    bucket = bucket_of(stack).state["bucket"]
    assert stack.outputs["backupDestination"] == f"s3://{bucket}/etcd"
    for instance in stack.of_type("aws:ec2/instance:Instance"):
        user_data = user_data_of(instance)
        script = written_file(user_data, "/usr/local/sbin/etcd-backup")
        assert f"readonly DESTINATION=s3://{bucket}/etcd" in script
        assert "readonly AWS_REGION=eu-west-2" in script
        timer = written_file(user_data, "/etc/systemd/system/etcd-backup.timer")
        assert "OnUnitActiveSec=30min" in timer.splitlines()


def test_an_alarm_fires_when_a_member_leaves_the_load_balancer(stack):
    alarm = stack.named("etcd-alarms-healthy-members", ALARM).inputs
    balancer = only(stack, "aws:lb/loadBalancer:LoadBalancer")
    group = only(stack, "aws:lb/targetGroup:TargetGroup")
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == ("AWS/NetworkELB", "HealthyHostCount",
                                                                            "Minimum")
    assert alarm["dimensions"] == {"LoadBalancer": balancer.state["arnSuffix"], "TargetGroup": group.state["arnSuffix"]}
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("LessThanThreshold", 3)
    assert alarm["treatMissingData"] == "breaching"
    assert alarm["alarmActions"] == [TOPIC] and alarm["okActions"] == [TOPIC]


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("backupIntervalMinutes", "2", "a whole number from 5 to 1440"),
    ("backupRetentionDays", "0", "a whole number from 1 to 3650"),
    ("alarmTopicArn", "etcd-alarms", "an SNS topic ARN"),
    ("alarmTopicArn", "arn:aws:sqs:eu-west-2:123456789012:q", "an SNS topic ARN"),
    ("backupLock", "strict", "'governance' or 'compliance' or 'policy'"),
    ("backupsOnDestroy", "forget", "'keep' or 'delete'"),
    ("backupBreakGlassRoleArn", "arn:aws:iam::123456789012:user/alice", "an IAM role ARN"),
    ("backupBreakGlassRoleArn", "break-glass", "an IAM role ARN"),
])
def test_day2_settings_are_validated(raw_config, key, value, allowed):
    from etcd_stack import config

    with pytest.raises(ConfigError, match=f"^etcd:{key}: '.*' is not allowed: {allowed}"):
        config.load(raw_config(**{key: value}), "test")


# --- the supported upgrade path -----------------------------------------------------------------

V = EtcdVersion


@pytest.mark.parametrize(("current", "target", "reason"), [
    (V(3, 5, 27), V(3, 5, 3), None),
    (V(3, 6, 5), V(3, 6, 14), None),
    (V(3, 4, 27), V(3, 5, 27), None),
    (V(3, 5, 32), V(3, 6, 14), None),
    (V(3, 5, 31), V(3, 6, 14), "etcd 3.6 needs 3.5.32 or later first"),
    (V(3, 6, 11), V(3, 7, 1), None),
    (V(3, 6, 10), V(3, 7, 1), "etcd 3.7 needs 3.6.11 or later first"),
    (V(3, 4, 27), V(3, 6, 14), "skips a minor version; upgrade to 3.5 first"),
    (V(3, 6, 14), V(3, 5, 27), "is a downgrade"),
])
def test_upgrades_go_one_minor_version_at_a_time(current, target, reason):
    refusal = upgrade.refusal(current, target)
    assert (refusal is None) if reason is None else (reason in refusal)


def test_the_record_tells_a_running_cluster_from_a_new_one():
    provider = ClusterRecordProvider()
    news = {"version": "3.6.14", "size": 3, "dataVolumeSize": 20, "bootstrapped": None}
    first = provider.check({}, news)
    assert first.failures == [] and first.inputs["bootstrapped"] is False
    created = provider.create(first.inputs).outs
    again = provider.check(created, news)
    assert again.inputs["bootstrapped"] is True
    assert provider.diff("cluster", created, again.inputs).changes  # recorded once, then steady
    assert not provider.diff("cluster", again.inputs, provider.check(again.inputs, news).inputs).changes


def test_a_smaller_data_volume_is_refused_at_preview():
    provider = ClusterRecordProvider()
    old = {"version": "3.6.14", "size": 3, "dataVolumeSize": 40, "bootstrapped": True}
    (failure,) = provider.check(old, {**old, "dataVolumeSize": 20}).failures
    assert failure.property == "dataVolumeSize"
    assert failure.reason == ("etcd:dataVolumeSize: 20 is smaller than the 40 GiB the members' volumes have; "
                              "EBS volumes only grow")
    assert provider.check(old, {**old, "dataVolumeSize": 80}).failures == []


# --- moving to a new CA -------------------------------------------------------------------------

def ca_stage(generation: int, rotation: str):
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:caGeneration": str(generation), "etcd:caRotation": rotation}
    return offline.run(raw, "test")


def subjects(pem_bundle: str) -> list[str]:
    from cryptography import x509

    return [cert.subject.rfc4514_string() for cert in x509.load_pem_x509_certificates(pem_bundle.encode())]


def issuer_of(run, member: str) -> str:
    from cryptography import x509

    signed = run.named(f"etcd-pki-{member}", "tls:index/locallySignedCert:LocallySignedCert")
    return x509.load_pem_x509_certificate(signed.state["certPem"].encode()).issuer.rfc4514_string()


@pytest.mark.parametrize(("generation", "rotation", "trusted", "issuer"), [
    (1, "none", ["etcd etcd CA"], "etcd etcd CA"),
    (2, "trust-new", ["etcd etcd CA 2", "etcd etcd CA"], "etcd etcd CA"),
    (2, "issue-new", ["etcd etcd CA 2", "etcd etcd CA"], "etcd etcd CA 2"),
    (2, "none", ["etcd etcd CA 2"], "etcd etcd CA 2"),
])
def test_a_ca_move_trusts_both_cas_before_the_new_one_issues(generation, rotation, trusted, issuer):
    run = ca_stage(generation, rotation)
    bundle = run.outputs["caCertPem"]
    assert [s.split("CN=")[1].split(",")[0] for s in subjects(bundle)] == trusted
    parameter = run.named("etcd-pki-ca-bundle", "aws:ssm/parameter:Parameter")
    assert parameter.inputs["name"] == "/etcd-aws/test/etcd/tls/ca-bundle"
    for member in ("etcd-0", "etcd-1", "etcd-2", "operator"):
        assert f"CN={issuer}" in issuer_of(run, member)
    cas = run.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert len(cas) == len(trusted)


def test_the_first_ca_keeps_its_name_across_a_move():
    before, during = ca_stage(1, "none"), ca_stage(2, "trust-new")
    first = before.named("etcd-pki-ca", "tls:index/selfSignedCert:SelfSignedCert")
    assert during.named("etcd-pki-ca", "tls:index/selfSignedCert:SelfSignedCert").public() == first.public()


def test_a_rotation_stage_needs_a_new_generation(raw_config):
    from etcd_stack import config

    with pytest.raises(ConfigError, match=r"^etcd:caRotation: 'trust-new' is not allowed: 'none' until"):
        config.load(raw_config(caRotation="trust-new"), "test")


def test_the_record_lets_a_running_cluster_change_size():
    provider = ClusterRecordProvider()
    old = {"version": "3.6.14", "size": 3, "dataVolumeSize": 20, "bootstrapped": True}
    assert provider.check(old, {**old, "size": 5}).failures == []
    assert provider.diff("cluster", old, {**old, "size": 5}).changes

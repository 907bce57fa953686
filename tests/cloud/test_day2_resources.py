"""The AWS side of day-2 operations, as the program registers it: backups, alarms, the version gate."""

from __future__ import annotations

import fnmatch
import json

import pytest

from etcd_stack import upgrade
from etcd_stack.cloud.gates import DeployedVersionProvider
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


def test_the_backup_bucket_is_private_versioned_encrypted_and_refuses_plain_http(stack):
    bucket = bucket_of(stack)
    assert only(stack, "aws:s3/bucketVersioning:BucketVersioning").inputs == {
        "bucket": bucket.id, "versioningConfiguration": {"status": "Enabled"}}
    block = only(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets"))
    encryption = only(stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert only(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    (statement,) = json.loads(only(stack, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])["Statement"]
    arn = bucket.state["arn"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_old_snapshots_expire_after_the_retention(stack):
    (rule,) = only(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["filter"] == {"prefix": "etcd/"}
    assert rule["expiration"] == {"days": 21}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 1}


def test_each_member_may_write_only_under_its_cluster_prefix(stack):
    arn = bucket_of(stack).state["arn"]
    for index in range(3):
        role = stack.named(f"etcd-access-{index}", "aws:iam/role:Role")
        grant = stack.named(f"etcd-backup-write-{index}", "aws:iam/rolePolicy:RolePolicy")
        assert grant.inputs["role"] == role.id
        statements = json.loads(grant.inputs["policy"])["Statement"]
        (put,) = [s for s in statements if s["Action"] == ["s3:PutObject", "s3:GetObject"]]
        assert fnmatch.fnmatchcase(f"{arn}/etcd/20261121T103950Z-etcd-1.db", put["Resource"])
        assert not fnmatch.fnmatchcase(f"{arn}/other-cluster/x.db", put["Resource"])
        assert not fnmatch.fnmatchcase(f"{arn}/etcd-evil/x.db", put["Resource"])
        (metric,) = [s for s in statements if s["Action"] == "cloudwatch:PutMetricData"]
        assert metric["Condition"] == {"StringEquals": {"cloudwatch:namespace": "etcd-aws"}}
        assert len(statements) == 2


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


def test_an_alarm_fires_when_backups_stop_arriving(stack):
    alarm = stack.named("etcd-alarms-backup-age", ALARM).inputs
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == ("etcd-aws", "SnapshotsUploaded", "Sum")
    assert alarm["dimensions"] == {"ClusterName": "etcd"}
    assert alarm["period"] == 2 * 30 * 60
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["treatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")
    script = written_file(user_data_of(stack.of_type("aws:ec2/instance:Instance")[0]), "/usr/local/sbin/etcd-backup")
    assert "--metric-name SnapshotsUploaded" in script and "--dimensions \"ClusterName=$CLUSTER_NAME\"" in script


def test_alarms_exist_without_a_topic_and_notify_nobody(run_stack):
    run = run_stack(bastion=False)
    alarms = run.of_type(ALARM)
    assert len(alarms) == 2
    assert all(not a.inputs.get("alarmActions") for a in alarms)


def test_the_deployed_version_is_recorded_and_members_wait_for_its_check(stack):
    (record,) = [r for r in stack.of_type("pulumi-python:dynamic:Resource") if "version" in r.inputs]
    assert (record.inputs["version"], record.inputs["size"]) == ("3.6.14", 3)
    assert "etcd-version" in stack.named("etcd-etcd", "etcd-aws:members:EtcdMembers").dependencies


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("backupIntervalMinutes", "2", "a whole number from 5 to 1440"),
    ("backupRetentionDays", "0", "a whole number from 1 to 3650"),
    ("alarmTopicArn", "etcd-alarms", "an SNS topic ARN"),
    ("alarmTopicArn", "arn:aws:sqs:eu-west-2:123456789012:q", "an SNS topic ARN"),
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


def test_the_version_gate_refuses_a_skip_at_preview_and_names_the_key():
    provider = DeployedVersionProvider()
    checked = provider.check({"version": "3.4.27"}, {"version": "3.6.14"})
    (failure,) = checked.failures
    assert failure.property == "version"
    assert failure.reason.startswith("etcd:version: 3.4.27 to 3.6.14 skips a minor version")
    assert provider.check({"version": "3.5.33"}, {"version": "3.6.14"}).failures == []
    assert provider.check({}, {"version": "3.6.14"}).failures == []


def test_the_version_gate_updates_in_place():
    provider = DeployedVersionProvider()
    assert provider.create({"version": "3.6.5"}).outs == {"version": "3.6.5"}
    changed = provider.diff("etcd-3.6.5", {"version": "3.6.5"}, {"version": "3.6.14"})
    assert changed.changes and not changed.replaces
    assert not provider.diff("etcd-3.6.5", {"version": "3.6.5"}, {"version": "3.6.5"}).changes
    assert provider.update("etcd-3.6.5", {"version": "3.6.5"}, {"version": "3.6.14"}).outs == {"version": "3.6.14"}


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
    assert parameter.inputs["name"] == "/etcd/tls/ca-bundle"
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


def test_the_gate_refuses_a_new_cluster_size_on_a_running_cluster():
    provider = DeployedVersionProvider()
    (failure,) = provider.check({"version": "3.6.14", "size": 3}, {"version": "3.6.14", "size": 5}).failures
    assert failure.property == "size"
    assert failure.reason.startswith("etcd:clusterSize: 3 to 5 on a running cluster is not supported")
    assert provider.check({}, {"version": "3.6.14", "size": 5}).failures == []
    assert provider.diff("id", {"version": "3.6.14", "size": 3}, {"version": "3.6.14", "size": 5}).changes

"""The AWS transport against botocore's Stubber, which checks every request against the real service model:
members found by their tags, the document and commands sent, final statuses, the deadline, the region."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from etcd_stack.ops import procedures
from etcd_stack.ops.ssm import SsmTransport, discover
from etcd_stack.ops.transport import BadInput, OperationError
from etcd_stack.tags import CLUSTER_TAG, MEMBER_TAG, STACK_TAG

REGION = "eu-west-2"
FILTERS = [
    {"Name": "tag:etcd-cluster", "Values": ["etcd"]},
    {"Name": "tag:pulumi-stack", "Values": ["dev"]},
    {"Name": "tag-key", "Values": ["etcd-member"]},
    {"Name": "instance-state-name", "Values": ["running"]},
]
COMMAND_ID = "0b5d5b62-6f1a-4a8e-9a55-1c0f7b0e1a2b"


def client(service: str, region: str = REGION):
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name=region).client(service)


def instance(member: str, index: int) -> dict:
    return {"InstanceId": f"i-0{index:016x}", "PrivateIpAddress": f"10.0.{index * 64}.10",
            "Tags": [{"Key": "etcd-cluster", "Value": "etcd"}, {"Key": "pulumi-stack", "Value": "dev"},
                     {"Key": "etcd-member", "Value": member}, {"Key": "Name", "Value": f"etcd-etcd-{index}"}]}


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def transport(ssm, clock: Clock | None = None) -> SsmTransport:
    clock = clock or Clock()
    instances = discover_three()
    return SsmTransport("dev", instances, ssm, clock=clock, sleep=clock.sleep, poll_s=2)


def discover_three():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [
            {"Instances": [instance("etcd-2", 2), instance("etcd-0", 0)]}], "NextToken": "page-2"},
            {"Filters": FILTERS})
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [instance("etcd-1", 1)]}]},
                          {"Filters": FILTERS, "NextToken": "page-2"})
        found = discover(ec2, "dev", "etcd")
        stub.assert_no_pending_responses()
    return found


def sent(stub: Stubber, command: str, timeout: str, instance_id: str = "i-00000000000000001") -> None:
    stub.add_response("send_command", {"Command": {"CommandId": COMMAND_ID}}, {
        "InstanceIds": [instance_id], "DocumentName": "AWS-RunShellScript", "Comment": ANY,
        "TimeoutSeconds": 30, "Parameters": {"commands": [command], "executionTimeout": [timeout]}})


def invocation(stub: Stubber, status: str, stdout: str = "", stderr: str = "", code: int = 0,
               instance_id: str = "i-00000000000000001") -> None:
    stub.add_response("get_command_invocation", {
        "CommandId": COMMAND_ID, "InstanceId": instance_id, "Status": status, "StatusDetails": status,
        "ResponseCode": code, "StandardOutputContent": stdout, "StandardErrorContent": stderr},
        {"CommandId": COMMAND_ID, "InstanceId": instance_id})


def test_members_are_found_by_cluster_stack_and_member_tags_in_index_order():
    found = discover_three()
    assert list(found) == ["etcd-0", "etcd-1", "etcd-2"]
    assert found["etcd-1"].instance_id == "i-00000000000000001"
    assert found["etcd-2"].private_ip == "10.0.128.10"


def test_the_tags_searched_for_are_the_tags_the_program_puts_on_members(run_stack):
    run = run_stack(bastion=False)
    members = [i for i in run.of_type("aws:ec2/instance:Instance") if MEMBER_TAG in i.inputs["tags"]]
    assert [m.inputs["tags"][MEMBER_TAG] for m in members] == ["etcd-0", "etcd-1", "etcd-2"]
    for member in members:
        assert member.inputs["tags"][CLUSTER_TAG] == "etcd" and member.inputs["tags"][STACK_TAG] == "test"
    # No other instance (the bastion) would be taken for a member.
    bastion = run_stack()
    others = [i for i in bastion.of_type("aws:ec2/instance:Instance") if MEMBER_TAG not in i.inputs["tags"]]
    assert len(others) == 1


def test_no_running_instance_for_the_stack_is_bad_input():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": []}, {"Filters": FILTERS})
        with pytest.raises(BadInput, match=r"--stack dev: no running instances tagged etcd-cluster=etcd, "
                                           r"pulumi-stack=dev and etcd-member"):
            discover(ec2, "dev", "etcd")


def test_a_command_is_sent_as_a_shell_script_and_polled_until_it_succeeds():
    ssm, clock = client("ssm"), Clock()
    with Stubber(ssm) as stub:
        sent(stub, "/usr/local/sbin/etcd-restore s3://bucket/etcd/a.db 'token with space'", "3600")
        # Right after SendCommand the invocation may not exist yet.
        stub.add_client_error("get_command_invocation", "InvocationDoesNotExist", http_status_code=400,
                              expected_params={"CommandId": COMMAND_ID, "InstanceId": "i-00000000000000001"})
        invocation(stub, "InProgress")
        invocation(stub, "Success", stdout="out\n", stderr="etcd-restore: etcd-1 restored\n")
        via = transport(ssm, clock)
        result = via.run("etcd-1", [via.script("etcd-1", "etcd-restore"), "s3://bucket/etcd/a.db",
                                    "token with space"], 3600)
        stub.assert_no_pending_responses()
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "etcd-restore: etcd-1 restored\n")
    assert clock.sleeps == [2, 2]


@pytest.mark.parametrize("status", ["Failed", "TimedOut", "Cancelled"])
def test_a_final_failure_raises_with_the_members_stderr(status):
    ssm = client("ssm")
    with Stubber(ssm) as stub:
        sent(stub, "systemctl stop etcd.service", "300")
        invocation(stub, status, stderr="Failed to stop etcd.service: Access denied\n", code=1)
        with pytest.raises(OperationError, match=rf"etcd-1: systemctl stop etcd.service ended {status} .*"
                                                 r"Failed to stop etcd.service: Access denied"):
            transport(ssm).run("etcd-1", ["systemctl", "stop", "etcd.service"], 300)
        stub.assert_no_pending_responses()


def test_the_deadline_is_honoured_and_the_command_cancelled():
    ssm, clock = client("ssm"), Clock()
    with Stubber(ssm) as stub:
        sent(stub, "/usr/local/sbin/etcd-defrag", "10")
        for _ in range(6):
            invocation(stub, "InProgress")
        stub.add_response("cancel_command", {}, {"CommandId": COMMAND_ID, "InstanceIds": ["i-00000000000000001"]})
        via = transport(ssm, clock)
        with pytest.raises(OperationError, match=r"etcd-1: /usr/local/sbin/etcd-defrag reached no final status "
                                                 r"within 10s \(last InProgress\); cancelled"):
            via.run("etcd-1", [via.script("etcd-1", "etcd-defrag")], 10)
        stub.assert_no_pending_responses()
    assert sum(clock.sleeps) == 10


def test_health_is_read_on_the_member_as_the_load_balancer_asks_it():
    ssm = client("ssm")
    url = "http://10.0.64.10:2381/health"
    with Stubber(ssm) as stub:
        sent(stub, f"curl --silent --max-time 3 --write-out '\\n%{{http_code}}' {url}", "60")
        invocation(stub, "Success", stdout='{"health":"true","reason":""}\n200')
        sent(stub, f"curl --silent --max-time 3 --write-out '\\n%{{http_code}}' {url}", "60")
        invocation(stub, "Success", stdout='{"health":"false","reason":"RAFT NO LEADER"}\n503')
        sent(stub, f"curl --silent --max-time 3 --write-out '\\n%{{http_code}}' {url}", "60")
        invocation(stub, "Failed", stderr="", code=7)
        via = transport(ssm)
        healthy, leaderless, down = (via.health("etcd-1") for _ in range(3))
        stub.assert_no_pending_responses()
    assert (healthy.status_code, healthy.healthy) == (200, True)
    assert (leaderless.status_code, leaderless.healthy, leaderless.reason) == (503, False, "RAFT NO LEADER")
    assert (down.status_code, down.healthy, down.reason) == (0, False, "not listening")


def test_the_stacks_region_is_used_for_both_clients():
    asked = []

    class Session:
        def client(self, service, region_name):
            asked.append((service, region_name))
            made = client(service, region_name)
            if service == "ec2":
                stub = Stubber(made)
                stub.add_response("describe_instances", {"Reservations": [{"Instances": [instance("etcd-0", 0)]}]},
                                  {"Filters": FILTERS})
                stub.activate()
            return made

    via = SsmTransport.connect("dev", "etcd", "ap-southeast-2", session=Session())
    assert asked == [("ec2", "ap-southeast-2"), ("ssm", "ap-southeast-2")]
    assert via.members() == ["etcd-0"]


def test_aws_profile_and_endpoint_url_are_honoured(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = us-east-1\naws_access_key_id = testing\n"
                      "aws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    session = boto3.Session(region_name=REGION)
    assert session.profile_name == "ops"
    assert session.get_credentials().access_key == "testing"
    made = session.client("ssm", region_name=REGION)
    assert made.meta.endpoint_url == "http://127.0.0.1:4566"
    assert made.meta.region_name == REGION


def test_a_procedure_runs_over_ssm_as_over_the_sandbox():
    """backup through the SSM transport: health of every member, the leader found, its script run."""
    ssm = client("ssm")
    ids = {f"etcd-{i}": f"i-0{i:016x}" for i in range(3)}
    ips = {f"etcd-{i}": f"10.0.{i * 64}.10" for i in range(3)}
    health = '{"health":"true","reason":""}\n200'

    def answer(member: str, command: str, timeout: str, stdout: str = "", stderr: str = "") -> None:
        sent(stub, command, timeout, ids[member])
        invocation(stub, "Success", stdout=stdout, stderr=stderr, instance_id=ids[member])

    def curl(member: str) -> str:
        return f"curl --silent --max-time 3 --write-out '\\n%{{http_code}}' http://{ips[member]}:2381/health"

    with Stubber(ssm) as stub:
        for member in ids:
            answer(member, curl(member), "60", health)
        for index, member in enumerate(ids):
            answer(member, curl(member), "60", health)
            status = [{"Endpoint": f"https://{ips[member]}:2379", "Status": {
                "header": {"member_id": 100 + index}, "leader": 101, "raftTerm": 2, "raftIndex": 40,
                "dbSize": 20480}}]
            answer(member, "/usr/local/sbin/etcd-ctl endpoint status --write-out json", "60",
                   stdout=json.dumps(status))
        answer("etcd-1", "/usr/local/sbin/etcd-backup", "3600",
               stderr="etcd-backup: snapshot s3://b/etcd/20261121T100012Z-etcd-1.db (20512 bytes)\n")
        said = []
        url = procedures.backup(transport(ssm), report=said.append)
        stub.assert_no_pending_responses()
    assert url == "s3://b/etcd/20261121T100012Z-etcd-1.db"
    assert said == ["  etcd-1  snapshot s3://b/etcd/20261121T100012Z-etcd-1.db (20512 bytes), taken by the leader"]

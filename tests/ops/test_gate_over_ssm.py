"""The gate provider as `pulumi up` runs it on AWS: its probe reads the cluster through the SSM transport, and
every request it makes is checked by botocore's Stubber against the service model."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from etcd_stack.ops.gate import GateFailed, GatePolicy
from etcd_stack.ops.probes import TransportProbe
from etcd_stack.ops.rollout import AFTER, BEFORE, MemberGateProvider
from tests.ops.test_gate import FakeClock
from tests.ops.test_ssm import client, invocation, sent, transport

NAMES = ["etcd-0", "etcd-1", "etcd-2"]
IDS = {name: f"i-0{index:016x}" for index, name in enumerate(NAMES)}
IPS = {name: f"10.0.{index * 64}.10" for index, name in enumerate(NAMES)}
MEMBER_IDS = {name: 100 + index for index, name in enumerate(NAMES)}
CTL = "/usr/local/sbin/etcd-ctl"
POLICY = GatePolicy(consecutive=2, interval_s=5, deadline_s=10, settle_s=10)


def answer(stub: Stubber, member: str, command: str, stdout: str = "", status: str = "Success",
           code: int = 0) -> None:
    sent(stub, command, "60", IDS[member])
    invocation(stub, status, stdout=stdout, code=code, instance_id=IDS[member])


def membership(stub: Stubber, asked: str = "etcd-0") -> None:
    listed = {"members": [{"ID": MEMBER_IDS[name], "name": name, "peerURLs": [f"https://{name}:2380"]}
                          for name in NAMES]}
    answer(stub, asked, f"{CTL} member list --write-out json", json.dumps(listed))


def curl(member: str) -> str:
    return f"curl --silent --max-time 3 --write-out '\\n%{{http_code}}' http://{IPS[member]}:2381/health"


def view(stub: Stubber, leader: str, silent: str | None = None, index: int = 40) -> None:
    """One probe: etcd's membership from the first member, then each member's health and its own status."""
    membership(stub)
    for name in NAMES:
        if name == silent:
            answer(stub, name, curl(name), status="Failed", code=7)  # curl: nothing listens on 2381
            continue
        answer(stub, name, curl(name), '{"health":"true","reason":""}\n200')
        status = {"header": {"member_id": MEMBER_IDS[name]}, "leader": MEMBER_IDS[leader], "raftTerm": 3,
                  "raftIndex": index, "version": "3.6.14", "isLearner": False}
        answer(stub, name, f"{CTL} endpoint status --write-out json",
               json.dumps([{"Endpoint": f"https://{IPS[name]}:2379", "Status": status}]))


def provider(ssm) -> MemberGateProvider:
    stack = transport(ssm)
    return MemberGateProvider(lambda props: TransportProbe(lambda: stack, parallel=False), POLICY, FakeClock())


def props(phase: str, **changes) -> dict:
    return {"member": "etcd-1", "phase": phase, "members": NAMES, "revision": "r1", "instance": IDS["etcd-1"],
            "version": "3.6.14", "bootstrapped": True, "region": "eu-west-2", "stack": "dev", "cluster": "etcd",
            **changes}


def test_before_a_change_the_gate_moves_leadership_off_the_member_through_ssm():
    ssm = client("ssm")
    with Stubber(ssm) as stub:
        for _ in range(3):  # which planned members etcd has; then the cluster sound twice in a row
            view(stub, leader="etcd-1")
        view(stub, leader="etcd-1")  # one probe: who leads, and the ids to move leadership by
        answer(stub, "etcd-1", f"{CTL} move-leader {MEMBER_IDS['etcd-0']:x}")
        for _ in range(2):
            view(stub, leader="etcd-0")
        old = props(BEFORE)
        provider(ssm).update("etcd-1-before", old, {**old, "revision": "r2"})
        stub.assert_no_pending_responses()


def test_a_member_that_does_not_come_back_fails_the_gate_at_its_deadline():
    ssm = client("ssm")
    with Stubber(ssm) as stub:
        for _ in range(4):  # which planned members etcd has; then three probes until the deadline
            view(stub, leader="etcd-0", silent="etcd-1")
        old = props(AFTER)
        with pytest.raises(GateFailed) as failure:
            provider(ssm).update("etcd-1-after", old, {**old, "revision": "r2"})
        stub.assert_no_pending_responses()
    assert "gave up waiting for etcd-1 to be back and caught up after 10s" in str(failure.value)
    assert "etcd-1 does not answer" in str(failure.value)


def test_refresh_records_the_version_the_member_reports_through_ssm():
    ssm = client("ssm")
    with Stubber(ssm) as stub:
        view(stub, leader="etcd-0")
        read = provider(ssm).read("etcd-1-after", {**props(AFTER), "ran": "3.5.33"})
        stub.assert_no_pending_responses()
    assert read.outs["ran"] == "3.6.14"

"""The benchmark's own logic (never its timings): figures, the deploy model, its sourced data."""

from __future__ import annotations

import json

from bench import critical_path, rolling
from bench.__main__ import table
from bench.common import Figure


def test_a_figure_is_read_against_its_baseline():
    figure = Figure("failover", "window", 1.5, 1.0, "s", "election timeout")
    assert figure.ratio == 1.5
    row = table([figure])[-1]
    assert row == "| failover | window | 1.5 s | 1 s (election timeout) | 1.50 |"


def test_every_creation_time_names_its_source_and_basis():
    entries = json.loads(critical_path.TIMES_FILE.read_text())
    assert len(entries) >= 20
    for entry in entries:
        if entry["typical_seconds"] is not None:
            assert entry["source"] and entry["quote"] and entry["basis"] in {
                "measured", "typical", "documented upper bound"}, entry["type"]


def test_the_longest_path_follows_waits_and_weights():
    table_ = {"aws:ec2/vpc:Vpc": {"typical_seconds": 10, "basis": "measured"},
              "aws:ec2/natGateway:NatGateway": {"typical_seconds": 100, "basis": "measured"},
              "aws:ec2/instance:Instance": {"typical_seconds": 20, "basis": "measured"}}
    vpc, nat, instance = ("aws:ec2/vpc:Vpc", "vpc"), ("aws:ec2/natGateway:NatGateway", "nat"), (
        "aws:ec2/instance:Instance", "member")
    component = ("etcd-aws:network:Network", "net")
    rows = [{"type": t, "name": n, "parent": None, "dependencies": [{"type": dt, "name": dn} for dt, dn in deps]}
            for (t, n), deps in ((vpc, ()), (nat, (vpc,)), (instance, (vpc,)), (component, (nat,)))]
    path, waits_for = critical_path.longest_path(rows, table_)
    assert path.seconds == 110 and path.nodes[:2] == (vpc, nat)
    assert critical_path.ancestors(instance, waits_for) == {vpc}
    assert critical_path.weight("aws:s3/bucket:Bucket", table_) == (critical_path.ASSUMED_SECONDS, "assumed")
    assert critical_path.weight("tls:index/privateKey:PrivateKey", table_) == (0.0, "local")


def test_on_the_dev_stack_no_instance_waits_for_the_load_balancer_or_nat():
    figures, findings = critical_path.run()
    assert findings[-1] == "instances waiting for the load balancer or a NAT gateway: none"
    assert figures[0].value >= figures[0].baseline  # a path is never shorter than its slowest step


def test_every_rolling_step_names_its_source_and_the_model_adds_them_up():
    entries = json.loads(rolling.STEPS_FILE.read_text())
    assert {entry["step"] for entry in entries} >= {*rolling.REPLACEMENT, "ssm-round-trip"}
    for entry in entries:
        assert entry["source"] and entry["quote"] and entry["basis"] in {"measured", "typical"}, entry["step"]
    times = {step: 10.0 for step in rolling.REPLACEMENT} | {"ssm-round-trip": 2.0}
    policy = rolling.GatePolicy(consecutive=3, interval_s=5.0)
    assert rolling.gate_seconds(policy, times) == 3 * 3 * 2.0 + 2 * 5.0
    gated, bare = rolling.modelled_roll(3, policy, times)
    assert bare == 3 * 10.0 * len(rolling.REPLACEMENT)
    assert gated == bare + 3 * 2 * 28.0
def test_a_child_waits_for_its_parent_component_and_what_that_waits_for():
    table_ = {"aws:ec2/natGateway:NatGateway": {"typical_seconds": 100, "basis": "measured"},
              "aws:ec2/instance:Instance": {"typical_seconds": 20, "basis": "measured"}}
    rows = [{"type": "aws:ec2/natGateway:NatGateway", "name": "nat", "parent": None, "dependencies": []},
            {"type": "etcd-aws:members:EtcdMembers", "name": "members", "parent": None,
             "dependencies": [{"type": "aws:ec2/natGateway:NatGateway", "name": "nat"}]},
            {"type": "aws:ec2/instance:Instance", "name": "member", "parent": "members", "dependencies": []}]
    path, _ = critical_path.longest_path(rows, table_)
    assert path.seconds == 120 and path.nodes[-1] == ("aws:ec2/instance:Instance", "member")

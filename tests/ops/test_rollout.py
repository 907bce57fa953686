"""The gate provider as the engine calls it: which steps run checks, what a failure stops, what it records."""

from __future__ import annotations

import pytest

from etcd_stack.ops.gate import ClusterView, GateFailed, GatePolicy
from etcd_stack.ops.rollout import AFTER, BEFORE, RETIRE, MemberGateProvider
from tests.ops.test_gate import NAMES, FakeClock, ScriptedProbe, member, view

QUICK = GatePolicy(consecutive=2, interval_s=5, deadline_s=60, settle_s=60)


def props(phase: str, **changes) -> dict:
    base = {"member": "etcd-1", "phase": phase, "members": list(NAMES), "revision": "r1", "instance": "i-etcd-1",
            "version": "3.6.14", "bootstrapped": True}
    return {**base, **changes}


class Probes:
    def __init__(self, *views):
        self.probe = ScriptedProbe(*views)
        self.asked: list[dict] = []

    def __call__(self, given):
        self.asked.append(dict(given))
        return self.probe


def test_the_first_deployment_checks_nothing():
    probes = Probes(view(member("etcd-1", reachable=False)))
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    created = provider.create(props(BEFORE, bootstrapped=False))
    assert probes.asked == []
    assert created.outs["ran"] == "3.6.14"


def test_a_member_joining_a_running_cluster_is_checked():
    probes = Probes(view())
    MemberGateProvider(probes, QUICK, FakeClock()).create(props(AFTER))
    assert probes.probe.calls == 1 + 1 + 2  # running?, which planned members exist, two checks in a row


def test_a_joining_member_needs_only_the_others_sound_before_it_is_added():
    three = ClusterView(tuple(member(name) for name in NAMES))
    probes = Probes(three)
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    provider.create(props(BEFORE, member="etcd-3", members=[*NAMES, "etcd-3", "etcd-4"]))
    with pytest.raises(GateFailed, match="etcd-3 is not a member"):
        provider.create(props(AFTER, member="etcd-3", members=[*NAMES, "etcd-3", "etcd-4"]))


def test_a_retirement_removes_the_member_from_a_running_cluster_only():
    five = ClusterView(tuple(member(name) for name in (*NAMES, "etcd-3", "etcd-4")))
    gone = ClusterView(tuple(member(name) for name in (*NAMES, "etcd-3")))
    probes = Probes(five, five, five, five, five, gone)
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    provider.create(props(RETIRE, member="etcd-4", members=list(NAMES), bootstrapped=False))
    assert probes.probe.removed == []
    provider.create(props(RETIRE, member="etcd-4", members=[*NAMES, "etcd-3"]))
    assert probes.probe.removed == ["etcd-4"]


def test_a_cluster_still_bootstrapping_is_not_waited_for():
    # A first deployment that failed half-way: the record exists, but no member leads yet.
    probes = Probes(view(member("etcd-0", is_leader=False), member("etcd-1", reachable=False)))
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    provider.create(props(AFTER))
    provider.create(props(BEFORE, member="etcd-2"))
    assert probes.probe.calls == 2


def test_a_new_revision_runs_the_before_gate_and_moves_leadership():
    leading = view(member("etcd-0", is_leader=False), member("etcd-1", is_leader=True))
    probes = Probes(leading, leading, leading, view())
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    old = props(BEFORE)
    provider.update("etcd-1-before", old, {**old, "revision": "r2"})
    assert probes.probe.moves == ["etcd-0"]


def test_a_gate_that_sees_a_sick_cluster_fails_the_update_with_what_it_saw():
    probes = Probes(view(member("etcd-2", healthy=False)))
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    old = props(BEFORE)
    with pytest.raises(GateFailed, match="etcd-2 is unhealthy"):
        provider.update("etcd-1-before", old, {**old, "revision": "r2"})


def test_the_after_gate_requires_the_new_instance():
    probes = Probes(view())  # still answering from the old instance id
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    old = props(AFTER)
    with pytest.raises(GateFailed, match="not the new instance i-new"):
        provider.update("etcd-1-after", old, {**old, "instance": "i-new", "revision": "r2"})


def test_nothing_that_the_member_runs_changed_means_no_check():
    probes = Probes(view(member("etcd-2", healthy=False)))
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    old = props(AFTER)
    assert not provider.diff("etcd-1-after", old, dict(old)).changes
    provider.update("etcd-1-after", old, {**old, "members": [*NAMES, "etcd-3"]})
    assert probes.probe.calls == 0


@pytest.mark.parametrize(("ran", "wanted", "refused"), [
    ("3.5.33", "3.6.14", None),
    ("3.5.33", "3.7.1", "skips a minor version"),
    ("3.6.14", "3.5.33", "downgrade"),
    ("3.5.26", "3.6.14", "needs 3.5.32 or later first"),
])
def test_versions_are_judged_against_what_the_member_ran_at_preview(ran, wanted, refused):
    provider = MemberGateProvider(Probes(view()), QUICK, FakeClock())
    result = provider.check({**props(AFTER), "ran": ran}, props(AFTER, version=wanted))
    if refused is None:
        assert result.failures == []
    else:
        (failure,) = result.failures
        assert failure.property == "version"
        assert failure.reason.startswith(f"etcd:version: etcd-1 runs {ran}: ")
        assert refused in failure.reason


def test_refresh_records_what_the_member_really_runs():
    probes = Probes(view(member("etcd-1", version="3.6.14")))
    provider = MemberGateProvider(probes, QUICK, FakeClock())
    read = provider.read("etcd-1-after", {**props(AFTER, version="3.6.14"), "ran": "3.5.33"})
    assert read.outs["ran"] == "3.6.14"
    # then a plain 3.7 is judged from 3.6, not from the stale record
    assert provider.check(read.outs, props(AFTER, version="3.7.1")).failures == []

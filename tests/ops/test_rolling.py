"""The gates `pulumi up` runs around each member, proven on real etcd through the sandbox's transport: the
probe reads what the gates judge, a roll moves leadership first and loses nothing, a member that cannot come
back stops the roll with the others untouched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from etcd_stack.ops import rolling
from etcd_stack.ops.gate import Gate, GateFailed, GatePolicy
from etcd_stack.ops.probes import TransportProbe
from etcd_stack.ops.transport import BadInput
from etcd_stack.sandbox.transport import SandboxTransport
from etcd_stack.sandbox.workload import Writer
from tests.ops.test_operations import LONGEST_PAUSE_S
from tests.sandbox.test_sandbox import etcd_stack, leader, make_sandbox, stack_config, stored

__all__ = ["make_sandbox"]
QUICK = GatePolicy(consecutive=3, max_lag=50, deadline_s=20.0, settle_s=10.0, interval_s=0.5)


def probe_of(box) -> TransportProbe:
    transport = SandboxTransport(box)
    return TransportProbe(lambda: transport)


def test_the_probe_reads_membership_roles_indexes_and_the_machine_that_answers(make_sandbox):
    box = make_sandbox()
    view = probe_of(box).view()
    assert [m.name for m in view.members] == ["etcd-0", "etcd-1", "etcd-2"]
    assert all(m.reachable and m.healthy and not m.is_learner and not m.alarms for m in view.members)
    assert [m.name for m in view.leaders] == [leader(box)]
    assert len({m.raft_term for m in view.members}) == 1
    assert all(m.raft_index > 0 and m.version == box.version for m in view.members)
    assert {m.instance for m in view.members} == {f"pid {box.pid(m)}" for m in box.members}


def test_a_stopped_member_is_seen_as_silent_and_the_gate_refuses_to_go_on(make_sandbox):
    box = make_sandbox()
    box.stop(box.members[2])
    probe = probe_of(box)
    state = probe.view().get("etcd-2")
    assert state is not None and not state.reachable
    with pytest.raises(GateFailed, match="etcd-2 does not answer"):
        Gate(probe, QUICK).before("etcd-1", ["etcd-0", "etcd-1", "etcd-2"])


def test_the_gate_moves_leadership_off_the_member_about_to_change(make_sandbox):
    box = make_sandbox()
    head = leader(box)
    lines: list[str] = []
    Gate(probe_of(box), QUICK, report=lines.append).before(head, [m.name for m in box.members])
    assert leader(box) != head
    assert any(line.startswith(f"{head}: leader; moving leadership to ") for line in lines)


def test_a_rolling_change_of_every_member_moves_leadership_first_and_loses_nothing(make_sandbox):
    box = make_sandbox()
    faster = stack_config()
    faster = type(faster)(**{**faster.__dict__, "heartbeat_ms": 50, "election_ms": 600})
    old_pids = {m.name: box.pid(m) for m in box.members}
    lines: list[str] = []
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        rolling.roll(box, report=lines.append, cfg=faster)
        writer.wait_for_writes_after(time.monotonic(), count=20)
    assert all(box.pid(m) != old_pids[m.name] for m in box.members)
    assert sum("moving leadership to" in line for line in lines) >= 1
    assert [line.strip() for line in lines if line.strip().endswith(f"rolled (etcd {box.version})")] == [
        f"{m.name}  rolled (etcd {box.version})" for m in box.members]
    assert writer.longest_pause() < LONGEST_PAUSE_S
    assert set(writer.acknowledged) <= set(stored(box))


def test_a_member_that_cannot_come_back_stops_the_roll_and_the_rest_stay_untouched(make_sandbox, tmp_path):
    box = make_sandbox()
    # A release whose etcd reports a patch version but never starts; its etcdctl is the working one.
    broken = tmp_path / "etcd"
    major, minor, patch = box.version.split(".")
    newer = f"{major}.{minor}.{int(patch) + 1}"
    broken.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo 'etcd Version: {newer}' && exit 0\nexit 1\n")
    broken.chmod(0o755)
    (tmp_path / "etcdctl").symlink_to(Path(box.binary).parent / "etcdctl")
    pids = {m.name: box.pid(m) for m in box.members}
    with pytest.raises(GateFailed) as failure:
        rolling.roll(box, report=lambda _: None, binary=broken, policy=QUICK)
    assert "gave up waiting for etcd-0 to be back and caught up after 20s" in str(failure.value)
    assert "etcd-0 does not answer" in str(failure.value)
    assert [box.pid(m) for m in box.members[1:]] == [pids["etcd-1"], pids["etcd-2"]]


def test_growing_to_five_and_shrinking_to_three_under_writes_keeps_quorum_and_every_write(make_sandbox):
    box = make_sandbox()
    lines: list[str] = []
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        rolling.resize(box, 5, report=lines.append)
        grown = probe_of(box).view()
        writer.wait_for_writes_after(time.monotonic(), count=20)
        rolling.resize(box, 3, report=lines.append)
        writer.wait_for_writes_after(time.monotonic(), count=20)
    assert [m.name for m in grown.members] == [f"etcd-{i}" for i in range(5)]
    assert all(m.reachable and m.healthy and not m.is_learner for m in grown.members)
    assert "  etcd-3  joined and promoted" in lines and "  etcd-4  joined and promoted" in lines
    assert lines.index("  etcd-4  removed") < lines.index("  etcd-3  removed")
    shrunk = probe_of(box).view()
    assert [m.name for m in shrunk.members] == ["etcd-0", "etcd-1", "etcd-2"]
    assert all(m.reachable and m.healthy for m in shrunk.members)
    assert writer.longest_pause() < LONGEST_PAUSE_S
    assert set(writer.acknowledged) <= set(stored(box))
    assert [m.name for m in type(box).load(box.directory).members] == ["etcd-0", "etcd-1", "etcd-2"]


def test_a_size_etcd_does_not_support_is_refused_before_anything_changes(make_sandbox):
    box = make_sandbox()
    pids = [box.pid(m) for m in box.members]
    with pytest.raises(BadInput, match=r"^--size: 4 is not one of 1, 3, 5, 7$"):
        rolling.resize(box, 4, report=lambda _: None)
    result = etcd_stack("sandbox", "resize", "--dir", str(box.directory), "--size", "6")
    assert (result.returncode, result.stderr) == (2, "etcd-stack sandbox: --size: 6 is not one of 1, 3, 5, 7\n")
    assert [box.pid(m) for m in box.members] == pids


def test_the_gate_provider_fed_by_a_real_cluster_moves_leadership_and_waits_for_a_restarted_member(make_sandbox):
    from etcd_stack.ops.rollout import AFTER, BEFORE, MemberGateProvider

    box = make_sandbox()
    head = leader(box)
    provider = MemberGateProvider(lambda props: probe_of(box), QUICK)
    names = [m.name for m in box.members]
    old = {"member": head, "phase": BEFORE, "members": names, "revision": "r1", "version": box.version,
           "bootstrapped": True, "instance": None}
    provider.update(f"{head}-before", old, {**old, "revision": "r2"})
    assert leader(box) != head
    member = box.member(head)
    box.stop(member)
    box.start(member)
    after = {**old, "phase": AFTER}
    provider.update(f"{head}-after", after, {**after, "revision": "r2",
                                              "instance": SandboxTransport(box).instance(head)})
    broken = {**after, "member": "etcd-9", "revision": "r2", "instance": "pid 1"}
    with pytest.raises(GateFailed, match="etcd-9 is not a member"):
        provider.update("etcd-9-after", after, broken)

"""The gate's decisions on cluster views: what lets a roll go on, what stops it, and what it says when it stops."""

from __future__ import annotations

import dataclasses

import pytest

from etcd_stack.ops.gate import Clock, ClusterView, Gate, GateFailed, GatePolicy, MemberState, cluster_problems

NAMES = ("etcd-0", "etcd-1", "etcd-2")


def member(name: str, **changes) -> MemberState:
    base = MemberState(name=name, reachable=True, healthy=True, raft_index=100, raft_term=2,
                       is_leader=name == "etcd-0", instance=f"i-{name}")
    return dataclasses.replace(base, **changes)


def view(*changed: MemberState) -> ClusterView:
    by_name = {m.name: m for m in changed}
    return ClusterView(tuple(by_name.get(name, member(name)) for name in NAMES))


class ScriptedProbe:
    """Answers views from a script (the last one repeats) and records leadership moves and removals."""

    def __init__(self, *views: ClusterView):
        self.views, self.calls, self.moves, self.removed = list(views), 0, [], []

    def view(self) -> ClusterView:
        self.calls += 1
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    def move_leader(self, to: str) -> None:
        self.moves.append(to)

    def remove_member(self, name: str) -> None:
        self.removed.append(name)


class FakeClock(Clock):
    def __init__(self):
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


def gate(probe: ScriptedProbe, **policy) -> tuple[Gate, list[str], FakeClock]:
    lines: list[str] = []
    clock = FakeClock()
    return Gate(probe, GatePolicy(interval_s=5, **policy), clock, lines.append), lines, clock


def test_a_sound_cluster_lets_a_follower_be_touched_without_moving_leadership():
    probe = ScriptedProbe(view())
    g, lines, _ = gate(probe)
    g.before("etcd-1", NAMES)
    assert probe.moves == []
    assert probe.calls == 3  # several answers in a row, not one
    assert lines[-1].startswith("etcd-1: cluster sound")


def test_the_leader_hands_leadership_to_the_most_advanced_follower_first():
    moved = view(member("etcd-0", is_leader=False), member("etcd-2", is_leader=True, raft_index=101))
    probe = ScriptedProbe(view(), view(), view(member("etcd-2", raft_index=101)), moved)
    g, lines, _ = gate(probe)
    g.before("etcd-0", NAMES)
    assert probe.moves == ["etcd-2"]
    assert "moving leadership to etcd-2" in lines[0]


@pytest.mark.parametrize(("broken", "said"), [
    (member("etcd-2", reachable=False, detail="SSM: instance not registered"), "etcd-2 does not answer (SSM"),
    (member("etcd-1", healthy=False), "etcd-1 is unhealthy"),
    (member("etcd-1", is_learner=True), "etcd-1 is still a learner"),
    (member("etcd-2", alarms=("NOSPACE",)), "etcd-2 has alarms NOSPACE"),
    (member("etcd-0", is_leader=False), "no leader"),
    (member("etcd-1", is_leader=True), "2 members say they lead (etcd-0, etcd-1)"),
])
def test_an_unsound_cluster_is_refused_naming_what_is_wrong(broken, said):
    probe = ScriptedProbe(view(broken))
    g, _, clock = gate(probe, settle_s=60)
    with pytest.raises(GateFailed) as failure:
        g.before("etcd-1", NAMES)
    assert said in str(failure.value)
    assert "before etcd-1" in str(failure.value)
    assert clock.t >= 60  # it waited for the cluster to settle before giving up
    assert probe.moves == []


def test_a_missing_member_is_refused():
    probe = ScriptedProbe(ClusterView(tuple(member(name) for name in NAMES[:2])))
    assert "etcd-2 is not a member" in cluster_problems(probe.view(), NAMES)


def test_a_brief_wobble_before_a_change_is_waited_out():
    probe = ScriptedProbe(view(member("etcd-2", healthy=False)), view())
    g, _, clock = gate(probe)
    g.before("etcd-1", NAMES)
    assert 0 < clock.t < 60


def test_after_waits_for_the_new_instance_to_rejoin_and_catch_up():
    probe = ScriptedProbe(
        view(member("etcd-1", reachable=False, detail="connection refused")),
        view(member("etcd-1", instance="i-old")),  # an answer from the instance that was replaced
        view(member("etcd-1", instance="i-new", is_learner=True, raft_index=10)),
        view(member("etcd-1", instance="i-new", raft_index=20)),  # voting, but far behind
        view(member("etcd-1", instance="i-new", raft_index=99)),
    )
    g, lines, _ = gate(probe, max_lag=5)
    g.after("etcd-1", NAMES, instance="i-new")
    assert probe.calls == 4 + 3
    assert "3 checks in a row" in lines[-1]


def test_a_single_good_answer_between_bad_ones_is_not_enough():
    good = view(member("etcd-1", instance="i-new"))
    bad = view(member("etcd-1", instance="i-new", healthy=False))
    probe = ScriptedProbe(good, good, bad, good, good, good)
    g, _, _ = gate(probe)
    g.after("etcd-1", NAMES, instance="i-new")
    assert probe.calls == 6


def test_a_member_that_never_catches_up_fails_at_the_deadline_with_what_was_seen():
    probe = ScriptedProbe(view(member("etcd-1", raft_index=10)))
    g, _, clock = gate(probe, max_lag=5, deadline_s=300)
    with pytest.raises(GateFailed) as failure:
        g.after("etcd-1", NAMES)
    message = str(failure.value)
    assert "after 300s" in message
    assert "etcd-1 trails the leader by 90 entries (at most 5)" in message
    assert "last seen: etcd-0 leader healthy index 100" in message
    assert 300 <= clock.t < 310


def test_a_learner_never_promoted_fails_the_gate():
    probe = ScriptedProbe(view(member("etcd-2", is_learner=True)))
    g, _, _ = gate(probe, deadline_s=60)
    with pytest.raises(GateFailed, match="etcd-2 is still a learner"):
        g.after("etcd-2", NAMES)


FIVE = ("etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4")


def five(*changed: MemberState, without: tuple[str, ...] = ()) -> ClusterView:
    by_name = {m.name: m for m in changed}
    return ClusterView(tuple(by_name.get(name, member(name)) for name in FIVE if name not in without))


def test_a_retired_member_leaves_the_membership_once_the_cluster_is_sound():
    probe = ScriptedProbe(five(), five(), five(), five(), five(without=("etcd-4",)))
    g, lines, _ = gate(probe)
    g.retire("etcd-4", FIVE[:4])
    assert probe.removed == ["etcd-4"]
    assert probe.moves == []
    assert "etcd-4: removed from the cluster" in lines


def test_a_retiring_leader_hands_over_first():
    leader = member("etcd-4", is_leader=True, raft_index=100)
    follower = member("etcd-0", is_leader=False, raft_index=101)
    moved = five(member("etcd-0", is_leader=False), member("etcd-1", is_leader=True))
    probe = ScriptedProbe(five(leader, follower), five(leader, follower), five(leader, follower),
                          five(leader, follower), moved, moved, moved, five(without=("etcd-4",)))
    g, _, _ = gate(probe)
    g.retire("etcd-4", FIVE[:4])
    assert probe.moves == ["etcd-0"]
    assert probe.removed == ["etcd-4"]


def test_a_member_already_gone_is_not_removed_again():
    probe = ScriptedProbe(five(without=("etcd-4",)))
    g, lines, _ = gate(probe)
    g.retire("etcd-4", FIVE[:4])
    assert probe.removed == []
    assert lines == ["etcd-4: not a member; nothing to remove"]


def test_no_member_is_removed_from_an_unsound_cluster():
    probe = ScriptedProbe(five(member("etcd-1", healthy=False)))
    g, _, _ = gate(probe, settle_s=30)
    with pytest.raises(GateFailed, match="etcd-1 is unhealthy"):
        g.retire("etcd-4", FIVE[:4])
    assert probe.removed == []

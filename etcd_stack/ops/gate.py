"""The checks around touching one member: the cluster is sound before, the member is back and caught up after.

The same checks run inside `pulumi up` (a gate resource per member, probing through SSM) and in the sandbox
(`etcd-stack roll`, probing the local members), so a roll proven here is the roll AWS gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from etcd_stack.ops.transport import OperationError


@dataclass(frozen=True)
class MemberState:
    """One member as it answers for itself; `reachable` False means it did not answer (see `detail`)."""

    name: str
    reachable: bool
    healthy: bool = False
    is_leader: bool = False
    is_learner: bool = False
    raft_index: int = 0
    raft_term: int = 0
    alarms: tuple[str, ...] = ()
    version: str | None = None
    # Which machine answered: a gate must not take an answer from the instance it replaced.
    instance: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class ClusterView:
    members: tuple[MemberState, ...]

    def get(self, name: str) -> MemberState | None:
        return next((member for member in self.members if member.name == name), None)

    @property
    def leaders(self) -> list[MemberState]:
        return [member for member in self.members if member.reachable and member.is_leader]

    def describe(self) -> str:
        return "; ".join(_describe(member) for member in self.members) or "no member answered"


def _describe(member: MemberState) -> str:
    if not member.reachable:
        return f"{member.name} unreachable ({member.detail or 'no answer'})"
    role = "leader" if member.is_leader else "learner" if member.is_learner else "follower"
    health = "healthy" if member.healthy else "unhealthy"
    alarms = f", alarms {','.join(member.alarms)}" if member.alarms else ""
    return f"{member.name} {role} {health} index {member.raft_index} term {member.raft_term}{alarms}"


class Probe(Protocol):
    def view(self) -> ClusterView: ...

    def move_leader(self, to: str) -> None: ...

    def remove_member(self, name: str) -> None: ...


@dataclass(frozen=True)
class GatePolicy:
    # A member must look right this many times in a row: one good answer can come just before it falls over.
    consecutive: int = 3
    # Raft entries a member may trail the leader by and still count as caught up.
    max_lag: int = 50
    # How long a replaced member may take to come back (boot, install, rejoin), and how long an unsound
    # cluster is given to settle before a change is refused.
    deadline_s: float = 900.0
    settle_s: float = 120.0
    interval_s: float = 5.0


class GateFailed(OperationError):
    """A gate refused to go on; the message says which member and what was seen."""


@dataclass
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Gate:
    probe: Probe
    policy: GatePolicy = field(default_factory=GatePolicy)
    clock: Clock = field(default_factory=Clock)
    report: Callable[[str], None] = lambda _: None

    def before(self, name: str, expected: Sequence[str]) -> None:
        """The cluster is whole and sound before `name` is touched; leadership moves away from it."""
        view = self._until(f"the cluster to be sound before {name} is touched",
                           lambda view: cluster_problems(view, expected), self.policy.settle_s)
        member = view.get(name)
        if member is not None and member.is_leader:
            successor = max((m for m in view.members if m.name != name and not m.is_learner),
                            key=lambda m: m.raft_index)
            self.report(f"{name}: leader; moving leadership to {successor.name}")
            self.probe.move_leader(successor.name)
            self._until(f"leadership to leave {name}", lambda view: _leader_problems(view, avoid=name),
                        self.policy.settle_s)
        self.report(f"{name}: cluster sound ({len(expected)} members, one leader); going on")

    def retire(self, name: str, remaining: Sequence[str]) -> None:
        """Takes `name` out of the cluster's membership, once the cluster is sound, and waits until the
        remaining members are sound without it. A member that is not a member any more is left alone."""
        if self.probe.view().get(name) is None:
            self.report(f"{name}: not a member; nothing to remove")
            return
        self.before(name, [*remaining, name])
        self.probe.remove_member(name)
        self.report(f"{name}: removed from the cluster")
        self._until(f"the cluster to be sound without {name}",
                    lambda view: ([f"{name} is still a member"] if view.get(name) else [])
                    + cluster_problems(view, remaining), self.policy.deadline_s)

    def after(self, name: str, expected: Sequence[str], instance: str | None = None) -> ClusterView:
        """`name` is back: started, a voting member, healthy and caught up, several answers in a row."""
        view = self._until(f"{name} to be back and caught up",
                           lambda view: member_problems(view, name, self.policy.max_lag, instance)
                           + cluster_problems(view, expected), self.policy.deadline_s)
        self.report(f"{name}: back, healthy and caught up ({self.policy.consecutive} checks in a row)")
        return view

    def _until(self, what: str, problems_of: Callable[[ClusterView], list[str]], limit_s: float) -> ClusterView:
        deadline = self.clock.now() + limit_s
        streak, problems = 0, ["not probed yet"]
        while True:
            view = self.probe.view()
            problems = problems_of(view)
            streak = 0 if problems else streak + 1
            if streak >= self.policy.consecutive:
                return view
            if self.clock.now() >= deadline:
                raise GateFailed(f"gave up waiting for {what} after {limit_s:.0f}s: "
                                 f"{'; '.join(problems) or 'not enough checks in a row'}; last seen: {view.describe()}")
            self.clock.sleep(self.policy.interval_s)


def cluster_problems(view: ClusterView, expected: Sequence[str]) -> list[str]:
    """What stops a change now: a member missing, silent, unhealthy, a learner, an alarm, not one leader."""
    problems = [f"{name} is not a member" for name in expected if view.get(name) is None]
    for member in view.members:
        if not member.reachable:
            problems.append(f"{member.name} does not answer ({member.detail or 'no answer'})")
            continue
        if not member.healthy:
            problems.append(f"{member.name} is unhealthy")
        if member.is_learner:
            problems.append(f"{member.name} is still a learner")
        if member.alarms:
            problems.append(f"{member.name} has alarms {', '.join(member.alarms)}")
    return problems + _leader_problems(view)


def member_problems(view: ClusterView, name: str, max_lag: int, instance: str | None = None) -> list[str]:
    member = view.get(name)
    if member is None:
        return [f"{name} is not a member"]
    if not member.reachable:
        return [f"{name} does not answer ({member.detail or 'no answer'})"]
    if instance is not None and member.instance != instance:
        return [f"{name} answered from {member.instance}, not the new instance {instance}"]
    problems = []
    if member.is_learner:
        problems.append(f"{name} is still a learner")
    if not member.healthy:
        problems.append(f"{name} is unhealthy")
    leaders = view.leaders
    if len(leaders) == 1 and leaders[0].raft_index - member.raft_index > max_lag:
        problems.append(f"{name} trails the leader by {leaders[0].raft_index - member.raft_index} entries "
                        f"(at most {max_lag})")
    return problems


def _leader_problems(view: ClusterView, avoid: str | None = None) -> list[str]:
    leaders = view.leaders
    if not leaders:
        return ["no leader"]
    if len(leaders) > 1:
        return [f"{len(leaders)} members say they lead ({', '.join(m.name for m in leaders)})"]
    terms = {member.raft_term for member in view.members if member.reachable}
    if len(terms) > 1:
        return [f"members disagree on the raft term ({', '.join(str(term) for term in sorted(terms))})"]
    if avoid is not None and leaders[0].name == avoid:
        return [f"{avoid} still leads"]
    return []

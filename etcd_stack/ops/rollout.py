"""The gate resources' provider: runs the gate checks inside `pulumi up`, around each member's change.

A member's `before` gate runs when what the member runs is about to change (its revision changed); the
member's instance waits for it. Its `after` gate takes the new instance as an input, so it runs once the
instance is replaced, and the next member's `before` gate waits for it. A `retire` gate, made for each member
index a smaller cluster leaves out, takes that member out of etcd's membership before its instance goes at the
end of the run, the highest index first. The first deployment runs no checks: a new cluster has no quorum
until its members exist. The `after` gate records the etcd version the member reported, and refuses at
preview a version that etcd cannot reach from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from etcd_stack import upgrade
from etcd_stack.ops.gate import Clock, Gate, GatePolicy, Probe
from etcd_stack.ops.probes import stack_probe

BEFORE, AFTER, RETIRE = "before", "after", "retire"
# Inputs whose change means the member is about to change, or has changed.
TRIGGERS = ("revision", "instance")


class MemberGateProvider(ResourceProvider):
    # The engine gets this provider pickled into the stack's state: in production it holds nothing but None,
    # and probes the stack through SSM; tests give it their own probes, policy and clock.
    def __init__(self, probe_for: Callable[[Mapping[str, Any]], Probe] | None = None,
                 policy: GatePolicy | None = None, clock: Clock | None = None):
        self._probe_for, self._policy, self._clock = probe_for, policy, clock

    def probe_for(self, props: Mapping[str, Any]) -> Probe:
        return (self._probe_for or stack_probe)(props)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        ran = olds.get("ran")
        if news.get("phase") == AFTER and ran:
            reason = upgrade.refusal(upgrade.parse(ran), upgrade.parse(news["version"]))
            if reason:
                failures.append(CheckFailure("version", (
                    f"etcd:version: {news['member']} runs {ran}: {reason} "
                    "(after a change made outside the gates, `pulumi up --refresh` reads what members run)")))
        return CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in (*TRIGGERS, "version", "members") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        # A new gate comes with a new member (or a new retirement). In a new cluster there is nothing to check
        # (and no quorum to wait for); a cluster with a leader is running, and its change is checked like any.
        if props.get("bootstrapped"):
            probe = self.probe_for(props)
            if probe.view().leaders:
                self._run(props, probe)
        return CreateResult(id_=f"{props['member']}-{props['phase']}", outs={**props, "ran": props["version"]})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if any(olds.get(key) != news.get(key) for key in TRIGGERS):
            self._run(news, self.probe_for(news))
        return UpdateResult(outs={**news, "ran": news["version"]})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # `pulumi refresh` learns what the member really runs, so a change made around the gates cannot wedge them.
        state = self.probe_for(props).view().get(props["member"])
        ran = state.version if state is not None and state.reachable and state.version else props.get("ran")
        return ReadResult(id_=id_, outs={**props, "ran": ran})

    def _run(self, props: Mapping[str, Any], probe: Probe) -> None:
        gate = Gate(probe, self._policy or GatePolicy(), self._clock or Clock())
        member, planned = props["member"], list(props["members"])
        if props["phase"] == RETIRE:
            gate.retire(member, planned)
            return
        # The planned members etcd already has must be sound; one a grown cluster adds later is not there yet.
        view = probe.view()
        present = [name for name in planned if view.get(name) is not None]
        if props["phase"] == BEFORE:
            gate.before(member, present)
        else:
            gate.after(member, [*present, member] if member not in present else present,
                       instance=props.get("instance"))

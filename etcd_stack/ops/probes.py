"""A cluster view read through a transport: each member's own etcd status, health and alarms, as the gates
and the rolling procedures judge them, from AWS through SSM or from the sandbox's processes alike."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

from etcd_stack.ops.gate import ClusterView, MemberState
from etcd_stack.ops.transport import Transport, call

# One etcdctl call on a member; SSM adds its own start-up to this.
PROBE_DEADLINE_S = 60.0


class TransportProbe:
    def __init__(self, transport: Transport, deadline_s: float = PROBE_DEADLINE_S):
        self.transport, self.deadline_s = transport, deadline_s
        self._ids: dict[str, int] = {}

    def view(self) -> ClusterView:
        return ClusterView(tuple(self._member(name) for name in self.transport.members()))

    def move_leader(self, to: str) -> None:
        view = self.view()
        leaders = view.leaders
        if not leaders or to not in self._ids:
            raise RuntimeError(f"cannot move leadership to {to}: {view.describe()}")
        self._ctl(leaders[0].name, "move-leader", format(self._ids[to], "x"))

    def _member(self, name: str) -> MemberState:
        instance = getattr(self.transport, "instance", lambda _: None)(name)
        try:
            (answer,) = json.loads(self._ctl(name, "endpoint", "status", "--write-out", "json").stdout)
            health = self.transport.health(name)
        except Exception as error:  # whatever stops an answer (SSM, TLS, a stopped etcd), the member is unreachable
            return MemberState(name=name, reachable=False, instance=instance, detail=str(error).splitlines()[0][:200])
        return self._state(name, answer["Status"], health.healthy, instance)

    def _state(self, name: str, status: Mapping[str, Any], healthy: bool, instance: str | None) -> MemberState:
        member_id = int(status["header"]["member_id"])
        self._ids[name] = member_id
        return MemberState(
            name=name, reachable=True, healthy=healthy,
            is_leader=int(status.get("leader", 0)) == member_id,
            is_learner=bool(status.get("isLearner", False)),
            raft_index=int(status.get("raftIndex", 0)),
            raft_term=int(status.get("raftTerm", 0)),
            alarms=tuple(str(error) for error in status.get("errors") or ()),
            version=status.get("version"),
            instance=instance,
        )

    def _ctl(self, member: str, *args: str) -> subprocess.CompletedProcess:
        return call(self.transport, member, [self.transport.script(member, "etcd-ctl"), *args], self.deadline_s)


def stack_probe(props: Mapping[str, Any]) -> TransportProbe:
    """The probe a gate uses inside `pulumi up`: the stack's members through SSM, from the deployer's machine."""
    from etcd_stack.ops.ssm import SsmTransport

    return TransportProbe(SsmTransport.connect(props["stack"], props["cluster"], props["region"]))

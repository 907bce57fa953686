"""A cluster view read through a transport, as the gates and the rolling procedures judge it: etcd's own
membership, and each member's status, health and alarms, from AWS through SSM or from the sandbox alike."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from etcd_stack.ops.gate import ClusterView, MemberState
from etcd_stack.ops.procedures import QUICK_S, member_status
from etcd_stack.ops.ssm import SsmTransport
from etcd_stack.ops.transport import OperationError, Transport, call


class TransportProbe:
    """`connect` is called for every view: on AWS a replaced member is a new instance, found again by its tags."""

    def __init__(self, connect: Callable[[], Transport], parallel: bool = True):
        self.connect, self.parallel = connect, parallel

    def view(self) -> ClusterView:
        return self._read(self.connect())[0]

    def move_leader(self, to: str) -> None:
        transport = self.connect()
        view, ids = self._read(transport)
        if len(view.leaders) != 1 or to not in ids:
            raise OperationError(f"cannot move leadership to {to}: {view.describe()}")
        self._ctl(transport, view.leaders[0].name, "move-leader", format(ids[to], "x"))

    def remove_member(self, name: str) -> None:
        transport = self.connect()
        view, ids = self._read(transport)
        if name not in ids:
            return
        others = [m.name for m in view.members if m.reachable and m.name != name]
        if not others:
            raise OperationError(f"cannot remove {name}: no other member answers")
        self._ctl(transport, others[0], "member", "remove", format(ids[name], "x"))

    def _read(self, transport: Transport) -> tuple[ClusterView, dict[str, int]]:
        """The cluster's view and etcd's member ids by name, from one membership listing."""
        names = transport.members()
        membership = self._membership(transport, names)
        if membership is None:
            silent = tuple(MemberState(name, reachable=False, detail="no member answers") for name in names)
            return ClusterView(silent), {}
        # In the members' own order; etcd lists them by id.
        ordered = sorted(name for name, _ in membership)
        ordered.sort(key=lambda name: names.index(name) if name in names else len(names))
        # Members are asked at once: through SSM each answer is a round trip of seconds.
        with ThreadPoolExecutor(max_workers=max(1, len(ordered)) if self.parallel else 1) as pool:
            states = tuple(pool.map(lambda name: self._state(transport, name, names), ordered))
        return ClusterView(states), dict(membership)

    def _membership(self, transport: Transport, names: list[str]) -> list[tuple[str, int]] | None:
        """etcd's members as (name, id), from the first member that answers; an unstarted one is named by its id."""
        for asked in names:
            try:
                answer = json.loads(self._ctl(transport, asked, "member", "list", "--write-out", "json").stdout)
            except (OperationError, ValueError):
                continue
            return [(m.get("name") or f"unstarted {int(m['ID']):x}", int(m["ID"])) for m in answer.get("members", [])]
        return None

    def _state(self, transport: Transport, name: str, reachable: list[str]) -> MemberState:
        if name not in reachable:
            return MemberState(name, reachable=False, detail="no machine answers for it")
        instance = transport.instance(name)
        try:
            status = member_status(transport, name)
        except Exception as error:  # whatever stops an answer (SSM, TLS, a stopped etcd), the member is silent
            return MemberState(name, reachable=False, instance=instance, detail=str(error).splitlines()[0][:200])
        if status.member_id is None:
            return MemberState(name, reachable=False, instance=instance, detail=status.health)
        return MemberState(name=name, reachable=True, healthy=status.healthy, is_leader=status.is_leader,
                           is_learner=status.learner, raft_index=status.raft_index or 0,
                           raft_term=status.raft_term or 0, alarms=status.alarms, version=status.version,
                           instance=instance)

    @staticmethod
    def _ctl(transport: Transport, member: str, *args: str):
        return call(transport, member, [transport.script(member, "etcd-ctl"), *args], QUICK_S)


def stack_probe(props: Mapping[str, Any]) -> TransportProbe:
    """The probe a gate uses inside `pulumi up`: the stack's members through SSM, from the deployer's machine."""
    return TransportProbe(lambda: SsmTransport.connect(props["stack"], props["cluster"], props["region"]))

"""The machines' transport for the day-2 procedures (ops/transport.py's Transport, by shape): a command runs on
the member's machine as root, in a transient service, as the SSM agent runs AWS-RunShellScript on an instance;
health is read from the world's side, as the load balancer's health check reads it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from etcd_stack.member.rendering import Paths
from etcd_stack.sandbox.gateway import Health, health
from etcd_stack.sandbox.machines import fleet
from etcd_stack.sandbox.machines.machine import Machine
from etcd_stack.sandbox.machines.network import in_namespace

# What a command answers when its machine is down: SSM would not deliver it (Undeliverable).
NOT_DELIVERED = 255


class MachineTransport:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.where = f"machines {self.home}"
        self.state = fleet.FleetState.load(self.home)

    def members(self) -> list[str]:
        return list(self.state.members)

    def _member(self, name: str) -> fleet.MemberState:
        # Read again each time: a replacement made by another handle on the same fleet is seen.
        self.state = fleet.FleetState.load(self.home)
        try:
            return self.state.members[name]
        except KeyError:
            raise fleet.FleetError(f"no member {name!r} in {self.where}") from None

    def machine(self, member: str) -> Machine:
        return fleet.machine_of(self._member(member))

    def script(self, member: str, name: str) -> str:
        self._member(member)
        return Paths().script(name)

    def run(self, member: str, command: Sequence[str], deadline_s: float) -> subprocess.CompletedProcess:
        machine = self.machine(member)
        if not machine.running():
            return subprocess.CompletedProcess(list(command), NOT_DELIVERED, "",
                                               f"{member}: instance {machine.instance.instance_id} is not running\n")
        return machine.run(command, deadline_s)

    def instance(self, member: str) -> str | None:
        machine = self.machine(member)
        return machine.instance.instance_id if machine.running() else None

    def health(self, member: str) -> Health:
        address = self._member(member).address
        return in_namespace(fleet.world_of(self.state).path, lambda: health(address, timeout=2))

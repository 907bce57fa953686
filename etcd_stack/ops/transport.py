"""The seam between a procedure and the members it operates: run a member's shipped script or a command,
read its health, list the members. SSM Run Command implements it on AWS (ops/ssm.py), local processes in
the sandbox (sandbox/transport.py, which satisfies it by shape and never imports this layer)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

# A command's answer, as subprocess gives it: args, returncode, stdout, stderr.
Result = subprocess.CompletedProcess


class MemberHealth(Protocol):
    """What the load balancer's health check sees: GET /health on the member's metrics port."""

    status_code: int
    healthy: bool
    reason: str


class Transport(Protocol):
    where: str  # names the cluster in messages: "stack dev", "sandbox /path"

    def members(self) -> list[str]:
        """The member names, in index order."""
        ...

    def run(self, member: str, command: Sequence[str], deadline_s: float) -> Result:
        """Runs `command` (a program and its arguments) on the member as root; a run past the deadline ends
        with returncode 124, or raises."""
        ...

    def script(self, member: str, name: str) -> str:
        """Where the member keeps its shipped script `name` (etcd-backup, etcd-join, ...)."""
        ...

    def health(self, member: str) -> MemberHealth:
        ...

    def instance(self, member: str) -> str | None:
        """Which machine answers for the member now (an instance id on AWS, a process in the sandbox): a gate
        takes no answer from the one a change replaced."""
        ...


class OperationError(Exception):
    """A procedure stopped: the message names the member and carries its own error."""


class BadInput(Exception):
    """The request itself is wrong (unknown member, missing snapshot, no instances): one line."""


def call(transport: Transport, member: str, command: Sequence[str], deadline_s: float) -> Result:
    """Runs the command and raises with the member's own error unless it succeeded."""
    result = transport.run(member, command, deadline_s)
    if result.returncode != 0:
        why = (result.stderr or result.stdout or "").strip()[-800:] or f"exit status {result.returncode}"
        what = " ".join([Path(command[0]).name, *command[1:2]])
        raise OperationError(f"{member}: {what} failed: {why}")
    return result


def run_script(transport: Transport, member: str, name: str, *args: str, deadline_s: float) -> Result:
    return call(transport, member, [transport.script(member, name), *args], deadline_s)

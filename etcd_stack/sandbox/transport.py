"""The sandbox's transport for the day-2 procedures (ops/transport.py's Transport, by shape): commands run
as local processes with the member's stand-ins first on PATH, health is read as the load balancer reads it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence

from etcd_stack.sandbox import standins
from etcd_stack.sandbox.cluster import Sandbox, SandboxError
from etcd_stack.sandbox.gateway import Health, health

# What `timeout` answers for a command it had to end.
TIMED_OUT = 124


class SandboxTransport:
    def __init__(self, box: Sandbox):
        self.box = box
        self.where = f"sandbox {box.directory}"
        self._path = f"{standins.write(box.directory)}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def members(self) -> list[str]:
        return [member.name for member in self.box.members]

    def _member(self, name: str):
        try:
            return self.box.member(name)
        except StopIteration:
            raise SandboxError(f"no member {name!r} in {self.where}") from None

    def script(self, member: str, name: str) -> str:
        return self.box.paths(self._member(member)).script(name)

    def run(self, member: str, command: Sequence[str], deadline_s: float) -> subprocess.CompletedProcess:
        self._member(member)
        env = {**os.environ, "PATH": self._path, standins.DIR_ENV: str(self.box.directory),
               standins.MEMBER_ENV: member}
        # A session of its own, so that a command past its deadline ends with everything it started.
        process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return subprocess.CompletedProcess(list(command), TIMED_OUT, stdout,
                                               f"{stderr}no answer within {deadline_s:g}s\n")
        return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)

    def instance(self, member: str) -> str | None:
        pid = self.box.pid(self._member(member))
        return None if pid is None else f"pid {pid}"

    def health(self, member: str) -> Health:
        return health(self._member(member).ip, timeout=2)

"""Processes started to outlive the command that started them: found again by pid file, stopped by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

STOP_TIMEOUT_S = 15.0
LOG_TAIL = 20


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Signals the process and waits until it is gone; a TERM that is not obeyed in time becomes a KILL."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)
        if not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while alive(pid):
        reap(pid)
        time.sleep(0.05)


def recorded_pid(pid_file: Path, argument: str) -> int | None:
    """The live process a pid file names, if its command line still holds `argument`: a recycled pid
    belongs to someone else. The command line reads empty only for an instant, while a launcher
    replaces itself with etcd."""
    try:
        pid = int(pid_file.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    ours = command == b"" or argument.encode() in command.split(b"\0")
    return pid if ours and alive(pid) else None


def spawn(command: list[str], log: Path) -> int:
    with open(log, "ab") as output:
        # A session of its own: the member outlives the command that started it.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process.pid


def listening(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((ip, port)) == 0


def tail(path: Path, lines: int = LOG_TAIL) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]

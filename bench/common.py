"""What every benchmark shares: a figure with its baseline, timing, and bare etcd clusters to compare with."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from etcd_stack import config
from etcd_stack.config import Bootstrap
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.gateway import health
from etcd_stack.sandbox.local import local_members
from etcd_stack.sandbox.processes import spawn, stop_pid


@dataclass(frozen=True)
class Figure:
    """One measurement beside the baseline measured in the same run."""

    section: str
    name: str
    value: float
    baseline: float
    unit: str
    baseline_name: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


@dataclass(frozen=True)
class Outcome:
    """What one section measured. `incomplete` says why the section did not reach its condition (empty when it
    did); an incomplete section's figures are still what it measured, and the report marks them."""

    figures: list[Figure]
    findings: list[str] = field(default_factory=list)
    incomplete: str = ""


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def stack_config(size: int = 3, bootstrap: str = "static", **more: str) -> config.StackConfig:
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:clusterSize": str(size),
           "etcd:bootstrap": bootstrap, **{f"etcd:{key}": value for key, value in more.items()}}
    return config.load(raw, "bench")


class BareCluster:
    """The same etcd, started bare: plaintext, minimal flags, static bootstrap, on the sandbox's addresses."""

    def __init__(self, binary: str, directory: Path, size: int):
        self.binary, self.directory = binary, directory
        self.members = local_members(size)
        self.pids: list[int] = []

    def start(self) -> None:
        cluster = ",".join(f"{m.name}=http://{m.ip}:2380" for m in self.members)
        for member in self.members:
            home = self.directory / member.name
            home.mkdir(parents=True, exist_ok=True)
            self.pids.append(spawn([
                self.binary, "--name", member.name, "--data-dir", str(home / "data"),
                "--listen-client-urls", f"http://{member.ip}:2379", "--advertise-client-urls",
                f"http://{member.ip}:2379", "--listen-peer-urls", f"http://{member.ip}:2380",
                "--initial-advertise-peer-urls", f"http://{member.ip}:2380", "--initial-cluster", cluster,
                "--listen-metrics-urls", f"http://{member.ip}:2381",
            ], home / "etcd.log"))

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        pending = {m.ip for m in self.members}
        while pending:
            pending = {ip for ip in pending if not health(ip, timeout=1).healthy}
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"bare members {sorted(pending)} not healthy in {timeout_s}s")
            time.sleep(0.05)

    def stop(self) -> None:
        for pid in self.pids:
            stop_pid(pid)
        self.pids.clear()


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    memory = next((line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "unknown")
    return {"cpu": cpu, "cores": cores, "memory": memory}


@contextlib.contextmanager
def running_sandbox(cfg: config.StackConfig) -> Iterator[sandbox.Sandbox]:
    """The stack's members as a static sandbox in a scratch directory, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "sandbox"
        box = sandbox.up(directory, "bench", cfg, Bootstrap.STATIC, report=lambda _: None)
        try:
            yield box
        finally:
            sandbox.down(directory)

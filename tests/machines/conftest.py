"""Members as machines: the dev stack's members booted by systemd-nspawn from their exact user_data, each in its
own network namespace at its planned address, with moto standing in for AWS's APIs and a metadata service per
instance. A module's machines are booted once for its tests and torn down after them, even when one fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from etcd_stack.preview import machines, offline
from etcd_stack.preview.wire import reveal
from etcd_stack.sandbox import binaries, processes
from etcd_stack.sandbox.gateway import Gateway, GatewayError, Health, health
from etcd_stack.sandbox.machines import aws, fleet
from etcd_stack.sandbox.machines.machine import CGROUP_ROOT
from etcd_stack.sandbox.machines.network import NETNS_DIR, World

REQUIRED = ("systemd-nspawn", "losetup", "nsenter", "ip", "haproxy")
HEALTHY_TIMEOUT_S = 120


def stack_config(**overrides: str) -> dict[str, str]:
    """The dev stack as the machines run it: static bootstrap, the etcd release built here from etcd's Go modules
    with its SHA-256 given as a user would give a release newer than the table."""
    tarball = binaries.release_tarball(binaries.MACHINE_VERSION)
    raw = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
           "etcd:version": binaries.MACHINE_VERSION, "etcd:releaseSha256": binaries.sha256_of(tarball)}
    raw.update(overrides)
    return raw


def render(**overrides: str) -> offline.OfflineRun:
    return offline.run(stack_config(**overrides), "dev")


class Cluster:
    """A booted fleet and what a test needs to reach it: the world's network, the operator's client identity."""

    def __init__(self, home: Path, run: offline.OfflineRun, plan: fleet.FleetPlan, started: fleet.Fleet):
        self.home, self.run, self.plan, self.fleet = home, run, plan, started
        self.world = World(started.state.world)
        credentials = home / "operator"
        credentials.mkdir(exist_ok=True)
        for name, output in (("ca.crt", "caCertPem"), ("operator.crt", "operatorCertPem"),
                             ("operator.key", "operatorKeyPem")):
            (credentials / name).write_text(reveal(run.outputs[output]))
        self.tls = tuple(str(credentials / name) for name in ("ca.crt", "operator.crt", "operator.key"))

    @property
    def addresses(self) -> dict[str, str]:
        return {member.name: member.address for member in self.plan.members}

    def in_world(self, function: Callable[[], Any]) -> Any:
        return self.world.call(function)

    def gateway(self, timeout: float = 5.0) -> Gateway:
        return Gateway(*self.tls, timeout=timeout)

    def health(self, member: str) -> Health:
        return self.in_world(lambda: health(self.addresses[member], timeout=2))

    def with_gateway(self, use: Callable[[Gateway], Any], timeout: float = 10.0) -> Any:
        """`use` called with the operator's client, inside the world."""

        def body() -> Any:
            gateway = self.gateway(timeout=timeout)
            try:
                return use(gateway)
            finally:
                gateway.close()

        return self.in_world(body)

    def write(self, items: dict[str, str]) -> None:
        """Each key through the first member that takes it."""

        def put(gateway: Gateway) -> None:
            for key, value in items.items():
                for address in self.addresses.values():
                    try:
                        gateway.put(address, key, value)
                        break
                    except (GatewayError, OSError):
                        continue
                else:
                    raise AssertionError(f"no member took {key}")

        self.with_gateway(put)

    def stored(self, prefix: str, member: str = "etcd-0", serializable: bool = False) -> dict[str, str]:
        """Every key under `prefix` as `member` answers (serializable: what it holds itself, not the leader)."""
        return self.with_gateway(lambda g: g.range_prefix(self.addresses[member], prefix, serializable=serializable))

    def ids(self) -> dict[str, str]:
        """Member name -> etcd member ID, for the members that have a name (have started)."""
        return {member["name"]: member["ID"] for member in self.members() if member.get("name")}

    def members(self) -> list[dict[str, Any]]:
        """etcd's member list as the first member that answers gives it."""

        def ask() -> list[dict[str, Any]]:
            gateway = self.gateway()
            try:
                for address in self.addresses.values():
                    try:
                        return gateway.call(address, "cluster/member/list", {})["members"]
                    except Exception:  # the next member may answer
                        continue
                raise AssertionError("no member answers a member list")
            finally:
                gateway.close()

        return self.in_world(ask)

    def wait_healthy(self, names: list[str] | None = None, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        names = names or list(self.addresses)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.health(name).healthy for name in names):
                return
            time.sleep(1)
        states = {name: self.health(name) for name in names}
        consoles = {name: self.journal(name, "etcd.service", "cloud-final.service")[-3000:] for name in names}
        raise AssertionError(f"not healthy within {timeout_s}s: {states}; journals: {consoles}")

    def sh(self, member: str, script: str, timeout_s: float = 120) -> Any:
        """A root shell command on the member, as Run Command runs one (a transient service)."""
        return self.fleet.machine(member).run(["bash", "-c", script], timeout_s)

    def enter(self, member: str, command: list[str], timeout_s: float = 60) -> Any:
        return self.fleet.machine(member).enter(command, timeout_s)

    def journal(self, member: str, *units: str) -> str:
        selectors = [f"--unit={unit}" for unit in units]
        return self.enter(member, ["journalctl", "--no-pager", "--output=cat", *selectors]).stdout

    def objects(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Key -> head_object of every object in the backup bucket under `prefix`."""
        (bucket,) = [b.name for b in self.plan.seed.buckets]

        def list_them() -> dict[str, dict[str, Any]]:
            s3 = aws.client("s3", self.plan.region)
            keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                    for o in page.get("Contents", [])]
            return {key: s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED") for key in keys}

        return self.in_world(list_them)


def leftovers(home: Path) -> list[str]:
    """What a fleet in `home` could leave behind: mounts, loop devices, processes, cgroups."""
    found = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if str(home) in line.split()[4]]
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], capture_output=True,
                           text=True, check=True).stdout
    found += [f"loop device {line.strip()}" for line in loops.splitlines() if str(home) in line]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in command:
            found.append(f"process {proc.name}: {command[:120]}")
    aws_pid = home / "aws.pid"
    if aws_pid.exists() and processes.alive(int(aws_pid.read_text())):
        found.append(f"the AWS stand-in (pid {aws_pid.read_text().strip()})")
    instances = home / "instances"
    for instance in instances.iterdir() if instances.exists() else []:
        if (CGROUP_ROOT / instance.name).exists():
            found.append(f"cgroup {CGROUP_ROOT / instance.name}")
    return found


def namespaces(run: str) -> set[str]:
    """The network namespaces of the fleet named `run` (other fleets may run beside it)."""
    return {name for name in os.listdir(NETNS_DIR) if name.startswith(f"{run}-")} if NETNS_DIR.exists() else set()


def require_machine_tools() -> None:
    missing = [tool for tool in REQUIRED if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"the machine tests need {', '.join(missing)}: `make test` installs them "
                                "(scripts/install-test-tools)")


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """Boots the dev stack's members (all, or all but `held`) once per module; tears them down after it."""
    require_machine_tools()
    fleets: list[tuple[Path, str]] = []

    def start(held: tuple[str, ...] = (), **overrides: str) -> Cluster:
        home, name = tmp_path_factory.mktemp("machines"), fleet.new_run()
        fleets.append((home, name))
        run = render(**overrides)
        plan = machines.plan(run, release=binaries.release_tarball(binaries.MACHINE_VERSION).read_bytes())
        started = fleet.Fleet.start(home, plan, machines.user_data(run), report=print, held=held, run=name)
        return Cluster(home, run, plan, started)

    yield start
    failures = []
    for home, name in fleets:
        try:
            fleet.down(home)
        except fleet.FleetError as error:
            failures.append(str(error))
        failures += leftovers(home) + [f"network namespace {netns}" for netns in namespaces(name)]
    assert not failures, failures


def status_json(text: str) -> dict[str, Any]:
    return json.loads(text) if text.strip() else {}

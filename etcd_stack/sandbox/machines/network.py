"""The members' network, as in the VPC: one network namespace per machine holding its planned private address,
joined by a bridge in a "world" namespace that plays the subnets' routers and hosts the AWS stand-ins. Nothing
is routed out of the world: it has no interface but the bridge and its loopback."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

NETNS_DIR = Path("/run/netns")
BRIDGE = "etcd-vpc"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetworkError(Exception):
    pass


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result


def exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def router(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The subnet's first usable address: the VPC router's (AWS reserves it in every subnet)."""
    return subnet.network_address + 1


@dataclass(frozen=True)
class World:
    """A named network namespace with the bridge all machines plug into."""

    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def create(self, subnets: Sequence[ipaddress.IPv4Network]) -> None:
        ip("netns", "add", self.name)
        ip("link", "set", "lo", "up", netns=self.name)
        ip("link", "add", BRIDGE, "type", "bridge", netns=self.name)
        for subnet in subnets:
            ip("addr", "add", f"{router(subnet)}/{subnet.prefixlen}", "dev", BRIDGE, netns=self.name)
        ip("link", "set", BRIDGE, "up", netns=self.name)
        # The world routes between the subnets as the VPC does; it has no route anywhere else.
        self.exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def add_address(self, address: str) -> None:
        """An address the stand-ins listen on, outside every subnet (as AWS's endpoints are)."""
        ip("addr", "add", f"{address}/32", "dev", "lo", netns=self.name)

    def exec(self, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", True)
        return subprocess.run(["ip", "netns", "exec", self.name, *command], **kwargs)

    def call(self, function: Callable[[], T]) -> T:
        """Runs `function` in a thread that has entered the world (threads it starts are in the world too)."""
        return in_namespace(self.path, function)

    def destroy(self) -> None:
        if exists(self.name):
            ip("netns", "delete", self.name)


@dataclass(frozen=True)
class Interface:
    """A machine's network namespace with its elastic network interface: the planned address on eth0, the
    default route through its subnet's router; the other end of the veth is on the world's bridge."""

    world: World
    netns: str
    host_side: str
    address: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.netns

    def create(self) -> None:
        ip("netns", "add", self.netns)
        ip("link", "set", "lo", "up", netns=self.netns)
        ip("link", "add", self.host_side, "type", "veth", "peer", "name", "eth0", "netns", self.netns,
           netns=self.world.name)
        ip("link", "set", self.host_side, "master", BRIDGE, "up", netns=self.world.name)
        ip("addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", "eth0", netns=self.netns)
        ip("link", "set", "eth0", "up", netns=self.netns)
        ip("route", "add", "default", "via", str(router(self.subnet)), netns=self.netns)

    def add_local_address(self, address: str) -> None:
        """An address only this machine sees (the instance metadata service's link-local one)."""
        ip("addr", "add", f"{address}/32", "dev", "lo", netns=self.netns)

    def destroy(self) -> None:
        # Deleting the namespace deletes eth0, and with it the world's end of the pair.
        if exists(self.netns):
            ip("netns", "delete", self.netns)
        ip("link", "delete", self.host_side, netns=self.world.name, check=False)


def in_namespace(path: Path, function: Callable[[], T]) -> T:
    """Runs `function` in a new thread that first joins the network namespace at `path`: the caller's own
    namespace is never changed."""
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            descriptor = os.open(path, os.O_RDONLY)
            try:
                if libc.setns(descriptor, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise NetworkError(f"cannot enter {path}: {os.strerror(error)}")
            finally:
                os.close(descriptor)
            outcome["value"] = function()
        except BaseException as error:  # handed to the caller's thread as is
            outcome["error"] = error

    thread = threading.Thread(target=body, name=f"netns {path.name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


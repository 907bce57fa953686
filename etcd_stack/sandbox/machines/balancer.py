"""The internal Network Load Balancer's stand-in: HAProxy in the world namespace, on the balancer's own fixed
addresses, passing TCP through to the members' client port and admitting only members whose health check
answers as the target group's does (HTTP GET on the metrics port, the status it expects, its interval and
thresholds), all read from the render.

Differences from the NLB, named at the seam:
- HAProxy proxies the connection (the member sees the world's address as the client's); the NLB with `ip`
  targets also shows its own address, so what a member sees is the same kind of address;
- it balances connections round-robin where the NLB hashes each flow to a target: both spread new
  connections and keep an established one on its member.
As on the NLB, a target starts out of service and is admitted after the healthy threshold of good checks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etcd_stack.sandbox import processes
from etcd_stack.sandbox.machines.network import World

START_TIMEOUT_S = 30
PID_FILE = "balancer.pid"
SOCKET = "balancer.sock"

Report = Callable[[str], None]


class BalancerError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    address: str


@dataclass(frozen=True)
class BalancerPlan:
    addresses: tuple[str, ...]  # the balancer's address in each subnet
    port: int  # the listener's
    targets: tuple[Target, ...]
    target_port: int
    check_port: int
    check_path: str
    check_status: str
    interval_s: int
    healthy_threshold: int
    unhealthy_threshold: int


def config(plan: BalancerPlan, home: Path) -> str:
    """HAProxy's configuration for `plan` (TCP mode; health checks over plain HTTP); its state is read on an
    admin socket in `home`."""
    lines = [
        "global",
        "  maxconn 4096",
        f"  stats socket {home / SOCKET} mode 600 level admin",
        "defaults",
        "  mode tcp",
        "  timeout connect 5s",
        # etcd's watches and gRPC streams stay open for hours: the NLB's idle timeout is 350 s for TCP.
        "  timeout client 350s",
        "  timeout server 350s",
        "frontend clients",
        *(f"  bind {address}:{plan.port}" for address in plan.addresses),
        "  default_backend members",
        "backend members",
        "  balance roundrobin",
        "  option httpchk",
        f"  http-check send meth GET uri {plan.check_path}",
        f"  http-check expect status {plan.check_status}",
        *(f"  server {target.name} {target.address}:{plan.target_port} check port {plan.check_port} "
          f"inter {plan.interval_s}s rise {plan.healthy_threshold} fall {plan.unhealthy_threshold}"
          for target in plan.targets),
    ]
    return "\n".join(lines) + "\n"


def start(world: World, plan: BalancerPlan, home: Path, report: Report = print) -> int:
    """HAProxy on the balancer's addresses inside the world; returns its pid once every address listens."""
    for address in plan.addresses:
        world.add_address(address)
    (home / "balancer.cfg").write_text(config(plan, home))
    log = home / "balancer.log"
    started = time.monotonic()
    pid = processes.spawn(["ip", "netns", "exec", world.name, "haproxy", "-db", "-f", str(home / "balancer.cfg")],
                          log)
    (home / PID_FILE).write_text(f"{pid}\n")
    while not all(world.call(lambda a=address: processes.listening(a, plan.port)) for address in plan.addresses):
        if not processes.alive(pid) or time.monotonic() - started > START_TIMEOUT_S:
            processes.stop_pid(pid)
            raise BalancerError(f"the load balancer did not start: {' | '.join(processes.tail(log))}")
        time.sleep(0.1)
    report(f"load balancer on {', '.join(plan.addresses)}:{plan.port} in {time.monotonic() - started:.1f}s")
    return pid


def targets_up(home: Path) -> list[str]:
    """The members HAProxy sends new connections to now: what the target group's health shows as healthy."""
    with socket.socket(socket.AF_UNIX) as admin:
        admin.settimeout(5)
        admin.connect(str(home / SOCKET))
        admin.sendall(b"show stat\n")
        answer = b""
        while chunk := admin.recv(65536):
            answer += chunk
    header, *rows = answer.decode().lstrip("# ").splitlines()
    columns = header.split(",")
    states = [dict(zip(columns, row.split(","), strict=False)) for row in rows if row]
    return sorted(state["svname"] for state in states
                  if state.get("pxname") == "members" and state["svname"] not in ("BACKEND", "FRONTEND")
                  and state.get("status", "").startswith("UP"))

"""discovery.etcd.io's stand-in for members booted as machines: the same v2 keys protocol the public service
speaks (it is an etcd v2 keys API under the token's path), served over HTTPS at the service's name.

Differences from discovery.etcd.io, named at the seam:
- the name resolves to an address of the world (the machines' /etc/hosts, as for the private zone);
- its certificate comes from a CA made for the run, which each instance trusts beside the system's (appended to
  the root's CA bundle); on AWS the public service has a certificate of a public CA;
- the token is registered by the test with the cluster's size, as `curl https://discovery.etcd.io/new?size=N`
  registers one on the public service.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from etcd_stack.member import certificates
from etcd_stack.sandbox import binaries, processes
from etcd_stack.sandbox.machines.network import World

HOST = "discovery.etcd.io"
ADDRESS = "192.0.2.20"
# The v2 keys API behind it, on the world's loopback only.
BACKEND_PORT = 24001
BACKEND = f"http://127.0.0.1:{BACKEND_PORT}"
PREFIX = "/v2/keys/discovery"
START_TIMEOUT_S = 30
SERVER_USES = ("digital_signature", "key_encipherment", "server_auth")

Report = Callable[[str], None]


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class DiscoveryPlan:
    token: str
    size: int


def new_url() -> str:
    """A discovery URL of the stand-in, shaped as the public service hands them out."""
    return f"https://{HOST}/{secrets.token_hex(16)}"


def token_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname != HOST:
        raise DiscoveryError(f"{url} is not a URL of {HOST}: the machines serve only that discovery service")
    return parts.path.strip("/")


def backend_binary() -> Path:
    """An etcd that still serves the v2 keys API (3.5, with --enable-v2)."""
    (version,) = [v for v in binaries.tested_versions() if v.startswith("3.5.")]
    return binaries.directory(version) / "etcd"


def issue_certificate(home: Path) -> str:
    """A CA for the run and a certificate for HOST from it; writes HAProxy's PEM; returns the CA's PEM."""
    now = certificates.start_of_year()
    ca_key = certificates.new_private_key()
    ca = certificates.self_signed_ca(ca_key, f"{HOST} stand-in CA", now)
    key = certificates.new_private_key()
    profile = certificates.CertProfile(common_name=HOST, dns_names=(HOST,), ip_addresses=(), uses=SERVER_USES)
    leaf = certificates.issue(profile, key, ca_key, ca, now)
    served = home / "discovery.pem"
    served.write_text(certificates.cert_pem(leaf) + certificates.key_pem(key))
    served.chmod(0o600)
    return certificates.cert_pem(ca)


def haproxy_config(home: Path) -> str:
    return "\n".join([
        "defaults",
        "  mode http",
        "  timeout connect 5s",
        # etcd's discovery client waits on the token's directory with long polls.
        "  timeout client 350s",
        "  timeout server 350s",
        "frontend discovery",
        f"  bind {ADDRESS}:443 ssl crt {home / 'discovery.pem'}",
        f"  http-request set-path {PREFIX}%[path]",
        "  default_backend keys",
        "backend keys",
        f"  server v2 127.0.0.1:{BACKEND_PORT}",
    ]) + "\n"


def start(world: World, plan: DiscoveryPlan, home: Path, report: Report = print) -> tuple[list[int], str]:
    """The v2 backend and HAProxy in the world, the token registered with the cluster's size; returns their
    pids and the CA the instances must trust."""
    home = home / "discovery"
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ca = issue_certificate(home)
    (home / "haproxy.cfg").write_text(haproxy_config(home))
    world.add_address(ADDRESS)
    pids = [processes.spawn(["ip", "netns", "exec", world.name, str(backend_binary()), "--name", "discovery",
                             "--data-dir", str(home / "data"), "--enable-v2=true",
                             "--listen-client-urls", BACKEND, "--advertise-client-urls", BACKEND,
                             "--listen-peer-urls", "http://127.0.0.1:24002",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:24002",
                             "--initial-cluster", "discovery=http://127.0.0.1:24002"], home / "etcd.log")]
    pids.append(processes.spawn(["ip", "netns", "exec", world.name, "haproxy", "-db", "-f",
                                 str(home / "haproxy.cfg")], home / "haproxy.log"))
    try:
        world.call(lambda: _register(plan, pids, home))
    except BaseException:
        for pid in pids:
            processes.stop_pid(pid)
        raise
    report(f"discovery service stand-in on https://{HOST} ({ADDRESS}) in {time.monotonic() - started:.1f}s")
    return pids, ca


def _register(plan: DiscoveryPlan, pids: list[int], home: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            answer = requests.put(f"{BACKEND}{PREFIX}/{plan.token}/_config/size", data={"value": str(plan.size)},
                                  timeout=2)
            if answer.status_code in (200, 201) and processes.listening(ADDRESS, 443):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or not all(processes.alive(pid) for pid in pids):
            logs = [line for log in ("etcd.log", "haproxy.log") for line in processes.tail(home / log, 3)]
            raise DiscoveryError(f"the discovery stand-in did not start: {' | '.join(logs)}")
        time.sleep(0.2)


def registered(world: World, token: str) -> dict[str, str]:
    """The members that registered under the token: member id -> "name=peer URL"."""

    def read() -> dict[str, str]:
        answer = requests.get(f"{BACKEND}{PREFIX}/{token}", timeout=5).json()
        return {node["key"].rsplit("/", 1)[1]: node["value"] for node in answer["node"].get("nodes", [])
                if not node.get("dir")}

    return world.call(read)

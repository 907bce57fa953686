"""The stack's cluster on this machine: real etcd members on loopback, from the cloud path's renderers.

Member N listens on 127.0.N+1.10 with the standard ports and the same TLS setup as on AWS.
Everything lives under one directory: per member its configuration, certificates, data, log and
pid file; `sandbox.json` records what `up` started so that `status` and `down` find it again.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from etcd_stack import releases
from etcd_stack.addressing import MemberPlan
from etcd_stack.config import Bootstrap, EtcdVersion, StackConfig
from etcd_stack.member import rendering
from etcd_stack.member.rendering import (
    CLIENT_PORT,
    METRICS_PORT,
    PEER_PORT,
    BackupSettings,
    BootstrapSettings,
    ClusterSettings,
)
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox.gateway import Gateway, GatewayError, health, local_session
from etcd_stack.sandbox.local import (
    ClientFiles,
    client_files,
    local_members,
    local_paths,
    parameter_names,
    publish_pki,
    write_pki,
)
from etcd_stack.sandbox.processes import listening, recorded_pid, spawn, stop_pid, tail

STATE_FILE = "sandbox.json"
DISCOVERY_IP = "127.0.100.1"
START_TIMEOUT_S = 60.0


class SandboxError(Exception):
    """The sandbox could not do what was asked; the message says why and what to do."""


# --- the etcd binary ------------------------------------------------------------------------

def find_etcd(version: str | None = None, report: Callable[[str], None] = lambda _: None) -> Path:
    """ETCD_BIN, else etcd `version` (the stack's default when None) from the project's cache, installed
    on first use (etcd_stack/sandbox/binaries.py)."""
    explicit = os.environ.get("ETCD_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SandboxError(f"ETCD_BIN: {explicit!r} is not an executable file")
        return Path(explicit)
    return installed_etcd(version or binaries.default_version(), report)


def installed_etcd(version: str, report: Callable[[str], None] = lambda _: None) -> Path:
    try:
        return binaries.ensure(version, report) / "etcd"
    except binaries.InstallError as error:
        raise SandboxError(f"etcd {version}: {error} (or set ETCD_BIN to an etcd binary)") from None


def real_binary(path: Path) -> Path:
    """The file a link to an etcd binary points at."""
    return path.resolve()


def link_tools(binary: Path, bin_dir: Path) -> None:
    """etcd, etcdctl and etcdutl (where the release has it) of one release, where the member scripts look."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("etcd", "etcdctl", "etcdutl"):
        link = bin_dir / tool
        link.unlink(missing_ok=True)
        source = binary if tool == "etcd" else binary.parent / tool
        if source.exists():
            link.symlink_to(real_binary(source))


def etcd_version(binary: Path) -> EtcdVersion:
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", output.stdout)
    if not match:
        raise SandboxError(f"{binary} does not answer --version like etcd")
    return EtcdVersion(*(int(part) for part in match.groups()))


# --- the sandbox ----------------------------------------------------------------------------

@dataclass
class Sandbox:
    directory: Path
    stack: str
    binary: str
    version: str
    bootstrap: str
    members: list[MemberPlan]
    cluster_name: str
    token: str
    heartbeat_ms: int
    election_ms: int
    quota_backend_bytes: int
    backup_interval_minutes: int
    discovery_url: str | None = None

    def settings(self) -> ClusterSettings:
        """The cluster as the renderers see it: the AWS path's settings, on loopback."""
        return ClusterSettings(
            name=self.cluster_name, token=self.token, version=parse_version(self.version),
            bootstrap=Bootstrap(self.bootstrap), members=tuple(self.members), heartbeat_ms=self.heartbeat_ms,
            election_ms=self.election_ms, quota_backend_bytes=self.quota_backend_bytes,
            backup=BackupSettings(f"file://{self.backups}", self.backup_interval_minutes),
            discovery_url=self.discovery_url,
        )

    @property
    def backups(self) -> Path:
        return self.directory / "backups"

    def render(self, member: MemberPlan) -> None:
        """Writes the member's configuration files, bootstrap and day-2 scripts, as its user_data would on AWS."""
        settings, paths, user = self.settings(), self.paths(member), getpass.getuser()
        # Only `etcd-bootstrap refresh-tls` runs here: it reads the parameters the sandbox keeps (standins.py).
        boot = BootstrapSettings(sha256={}, region="local", volume_id=f"vol-sandbox-{member.name}",
                                 **parameter_names(self.cluster_name, member.name))
        bootstrap = rendering.WrittenFile(paths.bootstrap_script,
                                          rendering.bootstrap_script(settings, member, paths, boot, etcd_user=user),
                                          permissions="0755")
        for file in [*rendering.configuration_files(settings, member, paths),
                     *rendering.day2_scripts(settings, member, paths, etcd_user=user), bootstrap]:
            Path(file.path).write_text(file.content)
            Path(file.path).chmod(int(file.permissions, 8))

    def restart(self, member: MemberPlan) -> None:
        """Stops the member gracefully, starts it again and waits until it is healthy."""
        self.stop(member)
        self.start(member)
        self.wait_healthy([member])

    def run_script(self, member: MemberPlan, name: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Runs one of the member's shipped scripts, as an operator would on AWS."""
        result = subprocess.run(["bash", self.paths(member).script(name), *args], capture_output=True, text=True,
                                timeout=300, env={**os.environ, **(env or {})}, check=False)
        if result.returncode != 0:
            raise SandboxError(f"{name} on {member.name} failed: {result.stderr.strip()[-500:]}")
        return result.stderr

    # --- layout
    @property
    def client(self) -> ClientFiles:
        return client_files(self.directory)

    def paths(self, member: MemberPlan) -> rendering.Paths:
        return local_paths(self.directory, member)

    def home(self, member: MemberPlan) -> Path:
        return Path(self.paths(member).data_mount)

    def pid_file(self, member: MemberPlan) -> Path:
        return self.home(member) / "pid"

    def log_file(self, member: MemberPlan) -> Path:
        return self.home(member) / "etcd.log"

    def member(self, name: str) -> MemberPlan:
        return next(m for m in self.members if m.name == name)

    def endpoints(self) -> str:
        return ",".join(f"https://{m.ip}:{CLIENT_PORT}" for m in self.members)

    def gateway(self, timeout: float = 5.0) -> Gateway:
        return Gateway(str(self.client.ca), str(self.client.cert), str(self.client.key), timeout)

    # --- state on disk
    def save(self) -> None:
        record = asdict(self)
        record["directory"] = str(self.directory)
        (self.directory / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Sandbox:
        path = directory / STATE_FILE
        if not path.exists():
            raise SandboxError(f"--dir: {str(directory)!r} holds no sandbox (no {STATE_FILE}); run `sandbox up` first")
        record = json.loads(path.read_text())
        record["directory"] = directory
        record["members"] = [MemberPlan(**member) for member in record["members"]]
        return cls(**record)

    # --- processes
    def pid(self, member: MemberPlan) -> int | None:
        """The member's running process, if any."""
        return recorded_pid(self.pid_file(member), self.paths(member).config_file)

    def running(self) -> list[MemberPlan]:
        return [m for m in self.members if self.pid(m) is not None]

    def start(self, member: MemberPlan) -> int:
        pid = self.pid(member)
        if pid is not None:
            return pid
        pid = spawn([self.binary, "--config-file", self.paths(member).config_file], self.log_file(member))
        self.pid_file(member).write_text(f"{pid}\n")
        return pid

    def stop(self, member: MemberPlan, sig: int = signal.SIGTERM) -> None:
        pid = self.pid(member)
        if pid is not None:
            stop_pid(pid, sig)
        self.pid_file(member).unlink(missing_ok=True)

    def has_data(self, member: MemberPlan) -> bool:
        return (Path(self.paths(member).data_dir) / "member").exists()

    def wait_healthy(self, members: list[MemberPlan], timeout_s: float = START_TIMEOUT_S,
                     report: Callable[[str], None] = lambda _: None) -> None:
        """Until every member answers 200 on /health, or one exits, or time runs out."""
        started = time.monotonic()
        pending = list(members)
        while pending:
            for member in list(pending):
                if self.pid(member) is None:
                    raise MemberFailed(member, "exited", tail(self.log_file(member)))
                if health(member.ip, timeout=1).healthy:
                    pending.remove(member)
                    report(f"  {member.name}  healthy after {time.monotonic() - started:.1f}s")
            if pending and time.monotonic() - started > timeout_s:
                member = pending[0]
                raise MemberFailed(member, f"not healthy after {timeout_s:.0f}s", tail(self.log_file(member)))
            time.sleep(0.1)

    def leader(self, timeout_s: float = 15.0) -> str:
        """The leader's member name, as the running members report it (waits out an election)."""
        deadline = time.monotonic() + timeout_s
        gateway = self.gateway(timeout=2)
        try:
            while time.monotonic() < deadline:
                for member in self.running():
                    try:
                        status = gateway.status(member.ip)
                        if status["leader"] != "0":
                            return gateway.members(member.ip)[status["leader"]]
                    except (requests.RequestException, GatewayError):
                        pass
                time.sleep(0.1)
        finally:
            gateway.close()
        raise SandboxError(f"no leader within {timeout_s:.0f}s")

    def stop_all(self) -> None:
        for member in self.members:
            self.stop(member)
        stop_discovery(self.directory)

class MemberFailed(SandboxError):
    def __init__(self, member: MemberPlan, what: str, log: list[str]):
        self.member, self.log = member, log
        super().__init__(f"{member.name} {what}")


# --- the discovery backend: one etcd with the v2 keys API, on its own loopback address ------

def discovery_home(directory: Path) -> Path:
    return directory / "discovery"


def start_discovery(directory: Path, binary: str, size: int) -> str:
    """Starts the v2 backend if needed and registers a token for `size` members; returns its URL."""
    home = discovery_home(directory)
    home.mkdir(parents=True, exist_ok=True)
    base = f"http://{DISCOVERY_IP}:{CLIENT_PORT}"
    pid_file = home / "pid"
    data_dir = str(home / "data")
    if recorded_pid(pid_file, data_dir) is None:
        pid = spawn([
            binary, "--name", "discovery", "--data-dir", data_dir, "--enable-v2=true",
            "--listen-client-urls", base, "--advertise-client-urls", base,
            "--listen-peer-urls", f"http://{DISCOVERY_IP}:2380",
            "--initial-advertise-peer-urls", f"http://{DISCOVERY_IP}:2380",
            "--initial-cluster", f"discovery=http://{DISCOVERY_IP}:2380",
            "--listen-metrics-urls", f"http://{DISCOVERY_IP}:2381",
        ], home / "etcd.log")
        pid_file.write_text(f"{pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not health(DISCOVERY_IP, timeout=1).healthy:
        if time.monotonic() > deadline or recorded_pid(pid_file, data_dir) is None:
            raise SandboxError("the discovery backend did not start: " + " | ".join(tail(home / "etcd.log", 5)))
        time.sleep(0.1)
    token = uuid.uuid4().hex
    url = f"{base}/v2/keys/discovery/{token}"
    with local_session() as session:
        response = session.put(f"{url}/_config/size", data={"value": str(size)}, timeout=5)
    if response.status_code not in (200, 201):
        raise SandboxError(f"the discovery backend refused the token: HTTP {response.status_code} {response.text[:80]}")
    return url


def stop_discovery(directory: Path) -> None:
    home = discovery_home(directory)
    pid = recorded_pid(home / "pid", str(home / "data"))
    if pid is not None:
        stop_pid(pid)
    (home / "pid").unlink(missing_ok=True)


# --- up and down ----------------------------------------------------------------------------

def create(directory: Path, stack: str, cfg: StackConfig, binary: Path, bootstrap: Bootstrap,
           report: Callable[[str], None] = lambda _: None) -> Sandbox:
    """Plans the members, issues their certificates and renders their files."""
    version = etcd_version(binary)
    members = local_members(cfg.cluster_size)
    directory.mkdir(parents=True, exist_ok=True)
    link_tools(binary, directory / "bin")
    write_pki(directory, members, cluster_name=cfg.cluster_name)
    publish_pki(directory, members, cfg.cluster_name)
    discovery_url = None
    if bootstrap is Bootstrap.DISCOVERY:
        # The v2 keys API the backend serves is gone from etcd 3.6 on: newer members get a 3.5 backend.
        backend = binary if version.line <= (3, 5) else installed_etcd(releases.newest((3, 5)), report)
        discovery_url = start_discovery(directory, str(backend), cfg.cluster_size)
    sandbox = Sandbox(
        directory, stack, str(binary), str(version), bootstrap.value, list(members),
        cluster_name=cfg.cluster_name, token=new_token(cfg.cluster_name), heartbeat_ms=cfg.heartbeat_ms,
        election_ms=cfg.election_ms,
        quota_backend_bytes=rendering.quota_backend_bytes(cfg.data_volume_size, cfg.quota_backend_bytes),
        backup_interval_minutes=cfg.backup_interval_minutes, discovery_url=discovery_url,
    )
    for member in members:
        sandbox.render(member)
    write_etcdctl_env(sandbox)
    sandbox.save()
    return sandbox


def new_token(cluster_name: str) -> str:
    return f"{cluster_name}-sandbox-{uuid.uuid4().hex[:8]}"


def parse_version(text: str) -> EtcdVersion:
    return EtcdVersion(*(int(part) for part in text.split(".")))


def write_etcdctl_env(sandbox: Sandbox) -> Path:
    path = sandbox.directory / "etcdctl.env"
    lines = [
        # The release's etcd tools first, then this project's etcd-stack (for the commands `up` suggests).
        f'export PATH="{sandbox.directory / "bin"}:{Path(sys.executable).parent}:$PATH"',
        f"export ETCDCTL_ENDPOINTS={sandbox.endpoints()}",
        f"export ETCDCTL_CACERT={sandbox.client.ca}",
        f"export ETCDCTL_CERT={sandbox.client.cert}",
        f"export ETCDCTL_KEY={sandbox.client.key}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def up(directory: Path, stack: str, cfg: StackConfig, bootstrap: Bootstrap, report: Callable[[str], None],
       timeout_s: float = START_TIMEOUT_S) -> Sandbox:
    """Starts every member (a sandbox already in `directory` restarts with its data) and waits for health."""
    directory = directory.resolve()
    if (directory / STATE_FILE).exists():
        sandbox = Sandbox.load(directory)
        wanted = (cfg.cluster_size, bootstrap.value)
        if (len(sandbox.members), sandbox.bootstrap) != wanted:
            raise SandboxError(
                f"--dir: {str(directory)!r} holds a {len(sandbox.members)}-member {sandbox.bootstrap} sandbox, not "
                f"{wanted[0]} members with {wanted[1]} bootstrap; use another --dir or `sandbox down --purge` first"
            )
        report(f"restarting the sandbox in {directory} with its data")
    else:
        binary = find_etcd(str(cfg.version), report)
        sandbox = create(directory, stack, cfg, binary, bootstrap, report)
    pinned = (f"the version the {stack} stack pins on AWS" if sandbox.version == str(cfg.version)
              else f"configuration rendered for it; the {stack} stack pins {cfg.version} on AWS")
    report(f"etcd {sandbox.version} from {sandbox.binary} ({pinned})")
    report(f"sandbox '{stack}': {len(sandbox.members)} members, {sandbox.bootstrap} bootstrap, "
           f"TLS on the client and peer ports, in {directory}")
    busy = [f"{m.ip}:{port}" for m in sandbox.members if sandbox.pid(m) is None
            for port in (CLIENT_PORT, PEER_PORT, METRICS_PORT) if listening(m.ip, port)]
    if busy:
        raise SandboxError(f"{', '.join(busy)} already in use (another sandbox? `sandbox down --dir` it first)")
    try:
        for member in sandbox.members:
            pid = sandbox.start(member)
            report(f"  {member.name}  https://{member.ip}:{CLIENT_PORT}  pid {pid}  log {sandbox.log_file(member)}")
        report("waiting until every member is healthy:")
        sandbox.wait_healthy(sandbox.members, timeout_s, report)
    except SandboxError:
        sandbox.stop_all()
        raise
    if all(sandbox.has_data(m) for m in sandbox.members):
        stop_discovery(directory)  # bootstrapped: members with data never ask it again
    return sandbox


def down(directory: Path, purge: bool = False) -> list[str]:
    """Stops everything `up` started; with purge, also removes what it wrote."""
    sandbox = Sandbox.load(directory.resolve())
    stopped = [m.name for m in sandbox.running()]
    sandbox.stop_all()
    if purge:
        for member in sandbox.members:
            shutil.rmtree(sandbox.home(member), ignore_errors=True)
        for name in ("pki", "discovery", "backups", "bin", "parameters", "standins"):
            shutil.rmtree(sandbox.directory / name, ignore_errors=True)
        for name in (STATE_FILE, "etcdctl.env"):
            (sandbox.directory / name).unlink(missing_ok=True)
        members_dir = sandbox.directory / "members"
        if members_dir.exists() and not any(members_dir.iterdir()):
            members_dir.rmdir()
    return stopped

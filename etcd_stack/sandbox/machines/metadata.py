"""The EC2 instance metadata service inside a machine's network namespace, at 169.254.169.254:80.

A member's scripts find their region, identity and role credentials there (the AWS CLI's IMDSv2 provider), and
etcd's unit is kept away from it by `IPAddressDeny=`: both need the real address inside the machine's namespace.
The stand-in is AWS's own mock, amazon-ec2-metadata-mock (AEMM, a Go module), built at a pinned version into
the etcd cache, run on 127.0.0.1:1338 in the namespace with `--imdsv2` semantics (tokens required, as the
stack's launch templates set `http_tokens = required`), behind HAProxy on 169.254.169.254:80 with one
connection at a time to AEMM: AEMM keeps its IMDSv2 tokens in a plain Go map (pkg/mock/imdsv2/
tokengenerator.go, GenerateToken; tokenvalidator.go, ValidateToken) and dies of "concurrent map writes" under
concurrent token requests, so HAProxy queues them.

Where the stand-in differs from EC2's IMDS (what a test on it does not prove):
- No credential rotation: the role's credentials are the ones `start` was given, until `stop`; their
  Expiration is only a date in the JSON, nothing refreshes or revokes them.
- No hop limit: EC2 drops token responses after `http_put_response_hop_limit` (1 here) IP hops; AEMM answers
  whatever reaches it, so a container one hop further would still get a token.
- PUT /latest/api/token with an X-Forwarded-For header is refused by EC2 (it marks proxied requests); AEMM
  issues the token; a GET of /latest/api/token answers an empty 200 (GenerateToken returns without writing).
  Token TTL bounds (1-21600 s, else 400) and 401 for a request with no or an unknown token (IMDSv1, refused as
  EC2 refuses it under `http_tokens = required`) match EC2.
- AEMM logs every request with its headers (so the session tokens) to aemm.log under the server's home.
- Only the paths configured here carry this machine's values; every other path (ami-id, the mac's subnet and
  VPC ids, placement/availability-zone-id, public-*, tags, user-data, the identity document's pkcs7 and
  signature) answers AEMM's fixed sample values, and the identity document's signature verifies against nothing.
- The namespace's `lo` holds 169.254.169.254/32: on EC2 it is link-local behind the instance's ENI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from etcd_stack.sandbox.binaries import InstallError, Report, _go, _go_env, _staging, cache_root, go

MODULE = "github.com/aws/amazon-ec2-metadata-mock"
VERSION = "v1.13.0"
PACKAGE = f"{MODULE}/cmd/ec2-metadata-mock"
ADDRESS = "169.254.169.254"
PORT = 80
BACKEND_PORT = 1338
PID_FILE = "metadata.pids"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


def binary_path(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / f"amazon-ec2-metadata-mock-{VERSION}" / "ec2-metadata-mock"


def ensure(report: Report = print, cache: Path | None = None) -> Path:
    """AEMM's binary at VERSION, built with `go install` from the Go module proxy when missing (the Go command
    checks the module against the Go checksum database)."""
    binary = binary_path(cache)
    if os.access(binary, os.X_OK):
        return binary
    if not go():
        raise InstallError(f"the instance metadata stand-in is built from {MODULE}: install Go (https://go.dev/dl/)")
    started = time.monotonic()
    report(f"amazon-ec2-metadata-mock {VERSION}: building {PACKAGE}@{VERSION}")
    with _staging(binary.parent) as staging:
        # Outside any module: `go install pkg@version` refuses -mod=mod, which _go_env sets for etcd's builds.
        env = {**_go_env(), "GOBIN": str(staging), "GOFLAGS": ""}
        _go(["install", "-trimpath", f"{PACKAGE}@{VERSION}"], staging, env, "go install", report)
        if not os.access(staging / binary.name, os.X_OK):
            raise InstallError(f"go install {PACKAGE}@{VERSION} left no {binary.name} in {staging}")
    report(f"amazon-ec2-metadata-mock {VERSION}: ready in {time.monotonic() - started:.0f}s -> {binary}")
    return binary


@dataclass(frozen=True)
class Identity:
    """What IMDS says about the instance: the values a member's scripts and the AWS CLI read."""

    instance_id: str
    region: str
    availability_zone: str
    private_ip: str
    hostname: str
    role_name: str
    account_id: str = "123456789012"
    instance_type: str = "t3.small"
    mac: str = "02:00:0a:00:00:0a"


@dataclass(frozen=True)
class Credentials:
    """The instance role's temporary credentials as IMDS serves them."""

    access_key_id: str
    secret_access_key: str
    token: str
    expiration: datetime

    @classmethod
    def fresh(cls, lifetime: timedelta = timedelta(hours=6)) -> Credentials:
        """Random credentials shaped like STS's (moto accepts any); expiring `lifetime` from now."""
        upper = string.ascii_uppercase + string.digits
        return cls(access_key_id="ASIA" + "".join(secrets.choice(upper) for _ in range(16)),
                   secret_access_key=secrets.token_urlsafe(30)[:40],
                   token=secrets.token_urlsafe(240),
                   expiration=(datetime.now(UTC) + lifetime).replace(microsecond=0))

    def document(self, updated: datetime) -> dict[str, str]:
        """The JSON body of iam/security-credentials/<role>."""
        return {"Code": "Success", "LastUpdated": _stamp(updated), "Type": "AWS-HMAC",
                "AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.token, "Expiration": _stamp(self.expiration)}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aemm_config(identity: Identity, credentials: Credentials, now: datetime | None = None) -> dict:
    """AEMM's config file (the keys of pkg/config/defaults/aemm-metadata-default-values.json, read by viper)."""
    now = now or datetime.now(UTC)
    prefix = "/latest/meta-data"
    return {
        "imdsv2": True,
        "server": {"hostname": "127.0.0.1", "port": str(BACKEND_PORT)},
        "metadata": {
            "paths": {"iam-security-credentials": f"{prefix}/iam/security-credentials/{identity.role_name}"},
            "values": {
                "instance-id": identity.instance_id,
                "instance-type": identity.instance_type,
                "placement-region": identity.region,
                "placement-availability-zone": identity.availability_zone,
                "local-ipv4": identity.private_ip,
                "local-hostname": identity.hostname,
                "hostname": identity.hostname,
                # mac-* paths name the mac: AEMM rewrites them when the mac value changes.
                "mac": identity.mac,
                "mac-mac": identity.mac,
                "mac-local-ipv4s": identity.private_ip,
                "mac-local-hostname": identity.hostname,
                "mac-owner-id": identity.account_id,
                "iam-info": {"Code": "Success", "LastUpdated": _stamp(now),
                             "InstanceProfileArn": f"arn:aws:iam::{identity.account_id}:instance-profile/"
                                                   f"{identity.role_name}",
                             "InstanceProfileId": "AIPA" + identity.instance_id.removeprefix("i-").upper()[:17]},
                "iam-security-credentials-role": identity.role_name,
                "iam-security-credentials": credentials.document(now),
            },
        },
        "dynamic": {"values": {"instance-identity-document": {
            "accountId": identity.account_id, "architecture": "x86_64",
            "availabilityZone": identity.availability_zone, "billingProducts": None, "devpayProductCodes": None,
            "imageId": "ami-0b69ea66ff7391e80", "instanceId": identity.instance_id,
            "instanceType": identity.instance_type, "kernelId": None, "marketplaceProductCodes": None,
            "pendingTime": _stamp(now), "privateIp": identity.private_ip, "ramdiskId": None,
            "region": identity.region, "version": "2017-09-30"}}},
    }


def haproxy_config() -> str:
    """HTTP mode, so HAProxy queues requests (not connections) for AEMM's single slot."""
    return "\n".join([
        "global",
        "    maxconn 256",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout queue 30s",
        "frontend imds",
        f"    bind {ADDRESS}:{PORT}",
        "    default_backend aemm",
        "backend aemm",
        f"    server aemm 127.0.0.1:{BACKEND_PORT} maxconn 1",
        "",
    ])


@dataclass
class MetadataServer:
    """AEMM and HAProxy running in a network namespace; `stop` ends both."""

    netns: str
    home: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    url: str = f"http://{ADDRESS}:{PORT}"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL after STOP_TIMEOUT_S; safe to call again."""
        for process in self.processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        (self.home / PID_FILE).unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


# A server's sockets it had accepted can outlive it in FIN-WAIT-2 for net.ipv4.tcp_fin_timeout (60 s).
FREE_WAIT_S = 75.0


def start(netns: str, identity: Identity, credentials: Credentials, home: Path,
          report: Report = print, cache: Path | None = None, free_wait_s: float = FREE_WAIT_S) -> MetadataServer:
    """Serves `identity` and `credentials` at 169.254.169.254:80 inside the network namespace `netns` and
    returns once an IMDSv2 token request and an instance-id read answer; a failed start leaves nothing
    running and raises with the logs' tails."""
    binary = ensure(report, cache)
    home.mkdir(parents=True, exist_ok=True)
    (home / "aemm.json").write_text(json.dumps(aemm_config(identity, credentials), indent=2) + "\n")
    (home / "haproxy.cfg").write_text(haproxy_config())
    _run(["ip", "-n", netns, "link", "set", "lo", "up"])
    if f" {ADDRESS}/32 " not in _run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "lo"]):
        _run(["ip", "-n", netns, "addr", "add", f"{ADDRESS}/32", "dev", "lo"])
    _check_free(netns, free_wait_s)
    server = MetadataServer(netns, home)
    started = time.monotonic()
    try:
        # `ip netns exec` execs the command, so each pid is the server's own; HOME keeps AEMM's files here.
        server.processes.append(_spawn(netns, [str(binary), "-c", str(home / "aemm.json")], home, "aemm.log"))
        server.processes.append(_spawn(netns, ["haproxy", "-db", "-f", str(home / "haproxy.cfg")], home,
                                       "haproxy.log"))
        (home / PID_FILE).write_text("".join(f"{pid}\n" for pid in server.pids))
        _wait_ready(server, identity.instance_id)
    except BaseException:
        server.stop()
        raise
    report(f"instance metadata for {identity.instance_id} at {server.url} in {netns} "
           f"(ready in {time.monotonic() - started:.1f}s)")
    return server


def stop_from(pid_file: Path) -> None:
    """Ends the servers a pid file of `start` names (from another process than the one that started them);
    a pid now held by an unrelated program is left alone."""
    try:
        pids = [int(line) for line in pid_file.read_text().split()]
    except FileNotFoundError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if _is_ours(pid)]
        for pid in alive:
            _signal_group(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _is_ours(pid)]
        if not alive:
            break
    pid_file.unlink(missing_ok=True)


def _is_ours(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and Path(command.decode(errors="replace")).name in ("ec2-metadata-mock", "haproxy")


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


# Runs inside the namespace: binds each address the servers need, so a taken one fails the start up front
# (otherwise the readiness probe could be answered by whatever already listens there).
_FREE = """
import socket, sys
for host, port in ((sys.argv[1], int(sys.argv[2])), ("127.0.0.1", int(sys.argv[3]))):
    with socket.socket() as probe:
        # As the servers bind: a connection of the last instance's in TIME_WAIT is no listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            sys.exit(f"{host}:{port} is in use ({error.strerror})")
"""


def _check_free(netns: str, wait_s: float) -> None:
    """Both ports free in `netns`; a previous instance's server may take a moment to let go of them."""
    deadline = time.monotonic() + wait_s
    while True:
        result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _FREE, ADDRESS, str(PORT),
                                 str(BACKEND_PORT)], capture_output=True, text=True, timeout=30, check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            holders = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Htanp"], capture_output=True, text=True,
                                     timeout=30, check=False).stdout
            ports = (f":{PORT} ", f":{BACKEND_PORT} ")
            held = " | ".join(line for line in holders.splitlines() if any(port in line for port in ports))
            raise RuntimeError(f"instance metadata cannot start in {netns}: {result.stderr.strip()}; sockets: {held}")
        time.sleep(0.5)


def _spawn(netns: str, command: list[str], home: Path, log: str) -> subprocess.Popen:
    with (home / log).open("ab") as output:
        return subprocess.Popen(["ip", "netns", "exec", netns, *command], cwd=home, stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "HOME": str(home)})


# Runs inside the namespace: the IMDSv2 exchange the AWS CLI makes, printing the instance id.
_PROBE = """
import sys, urllib.request
base = sys.argv[1]
put = urllib.request.Request(base + "/latest/api/token", method="PUT",
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(put, timeout=2).read().decode()
get = urllib.request.Request(base + "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
print(urllib.request.urlopen(get, timeout=2).read().decode())
"""


def _wait_ready(server: MetadataServer, instance_id: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        for process, log in zip(server.processes, ("aemm.log", "haproxy.log"), strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{log.removesuffix('.log')} exited with {process.returncode} in {server.netns}:"
                                   f"\n{_tails(server.home)}")
        probe = subprocess.run(["ip", "netns", "exec", server.netns, sys.executable, "-c", _PROBE, server.url],
                               capture_output=True, text=True, timeout=15, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == instance_id:
            return
        last = (probe.stdout + probe.stderr).strip().splitlines()[-1:] or [""]
        last = last[0]
        time.sleep(0.1)
    raise RuntimeError(f"instance metadata in {server.netns} not answering after {READY_TIMEOUT_S:.0f}s "
                       f"(last probe: {last}):\n{_tails(server.home)}")


def _tails(home: Path, lines: int = 15) -> str:
    parts = []
    for log in ("aemm.log", "haproxy.log"):
        path = home / log
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        parts.append(f"--- {path}\n" + "\n".join(text))
    return "\n".join(parts)


def main() -> int:
    try:
        print(ensure(), flush=True)
    except InstallError as error:
        print(f"instance metadata stand-in: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

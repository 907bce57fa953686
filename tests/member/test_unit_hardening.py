"""The hardened units: systemd's own exposure score, and real etcd doing its work inside what the unit allows.

The sandbox runs etcd as a plain process, so what the unit forbids is checked against what etcd actually
does: etcd runs under strace from the rendered configuration, becomes ready, serves a write and stops, and
every system call, socket family, written path and memory mapping it used must be one the unit permits.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
from collections import defaultdict
from pathlib import Path, PurePosixPath

import pytest
import yaml

from etcd_stack.addressing import MemberPlan
from etcd_stack.config import Bootstrap
from etcd_stack.member import rendering
from etcd_stack.member.rendering import METADATA_ADDRESSES, ClusterSettings
from etcd_stack.sandbox.cluster import etcd_version as version_of
from etcd_stack.sandbox.cluster import real_binary
from etcd_stack.sandbox.gateway import local_session
from etcd_stack.sandbox.local import local_paths, write_pki
from tests.conftest import written_file
from tests.sandbox.test_real_etcd import BINARIES

UNIT = "/etc/systemd/system/etcd.service"
BACKUP_UNIT = "/etc/systemd/system/etcd-backup.service"
DEFRAG_UNIT = "/etc/systemd/system/etcd-defrag.service"
# The bound for etcd; the backup and defragmentation units do less, so they are held to the same bound.
MOST_EXPOSURE = 4.0
# Directories ProtectHome=yes hides.
HIDDEN_HOMES = ("/home", "/root", "/run/user")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test` installs it"
    return path


def directives(unit: str) -> dict[str, list[str]]:
    """Each key of the unit's [Service] section with its values in order (systemd allows a key many times)."""
    found: dict[str, list[str]] = defaultdict(list)
    section = ""
    for line in unit.splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key].append(value)
    return found


def exposure(tmp_path: Path, name: str, unit: str) -> float:
    path = tmp_path / name
    path.write_text(unit)
    result = subprocess.run([tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(path)],
                            capture_output=True, text=True, check=False)
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout[-500:] + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("path", [UNIT, BACKUP_UNIT, DEFRAG_UNIT], ids=["etcd", "backup", "defrag"])
def test_systemd_rates_every_rendered_unit_at_most_4(rendered_members, tmp_path, path):
    scores = {exposure(tmp_path, Path(path).name, unit)
              for unit in {written_file(user_data, path) for user_data in rendered_members.values()}}
    assert max(scores) <= MOST_EXPOSURE, scores


def test_the_score_reads_a_real_rating_an_unhardened_unit_fails(rendered_members, tmp_path):
    unit = written_file(next(iter(rendered_members.values())), UNIT)
    service, _, install = unit.partition("# What etcd may touch")
    bare = service + "\n[Install]" + install.partition("[Install]")[2]
    assert exposure(tmp_path, "etcd.service", bare) > MOST_EXPOSURE


def test_no_etcd_process_reaches_the_metadata_service_while_peers_and_clients_stay_reachable(rendered_members):
    for name, user_data in rendered_members.items():
        unit = directives(written_file(user_data, UNIT))
        denied = [ipaddress.ip_network(a) for value in unit["IPAddressDeny"] for a in value.split()]
        assert {ipaddress.ip_network(a) for a in METADATA_ADDRESSES} == set(denied), name
        assert "IPAddressAllow" not in unit
        config = yaml.safe_load(written_file(user_data, "/etc/etcd/etcd.yaml"))
        for url in (config["listen-peer-urls"] + "," + config["listen-client-urls"]).split(","):
            address = ipaddress.ip_address(url.split("//")[1].rsplit(":", 1)[0])
            assert not any(address in network for network in denied), (name, url)


def test_the_unit_lets_etcd_write_its_data_and_read_its_configuration(rendered_members):
    for name, user_data in rendered_members.items():
        unit = directives(written_file(user_data, UNIT))
        config = yaml.safe_load(written_file(user_data, "/etc/etcd/etcd.yaml"))
        assert unit["ProtectSystem"] == ["strict"] and unit["ProtectHome"] == ["yes"]
        writable = [PurePosixPath(p) for value in unit["ReadWritePaths"] for p in value.split()]
        assert any(PurePosixPath(config["data-dir"]).is_relative_to(w) for w in writable), name
        security = config["peer-transport-security"]
        for path in (unit["ExecStart"][0].split()[2], security["cert-file"], security["key-file"],
                     security["trusted-ca-file"]):
            assert not any(PurePosixPath(path).is_relative_to(home) for home in HIDDEN_HOMES), (name, path)


# --- real etcd inside the unit's limits ------------------------------------------------------

def filter_groups() -> dict[str, set[str]]:
    """systemd's system call groups, as this systemd defines them, nested groups expanded."""
    listing = subprocess.run([tool("systemd-analyze"), "syscall-filter", "--no-pager"], capture_output=True,
                             text=True, check=True).stdout
    raw: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.strip()
            raw[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            raw[current].append(line.strip())

    def expand(group: str) -> set[str]:
        names: set[str] = set()
        for entry in raw[group]:
            names |= expand(entry) if entry.startswith("@") else {entry}
        return names

    return {group: expand(group) for group in raw}


def allowed_calls(unit: dict[str, list[str]]) -> set[str]:
    """What SystemCallFilter= lines leave allowed: the first list allows, a ~list then removes."""
    groups = filter_groups()
    allowed: set[str] = set()
    for value in unit["SystemCallFilter"]:
        deny = value.startswith("~")
        names: set[str] = set()
        for entry in value.lstrip("~").split():
            names |= groups[entry] if entry.startswith("@") else {entry}
        allowed = allowed - names if deny else allowed | names
    return allowed


# One traced call: pid, name, arguments and result, or the start or end of an interrupted one.
CALL = re.compile(r"^\d+\s+(?:<\.\.\. (?P<resumed>\w+) resumed>|(?P<name>\w+)\((?P<args>.*))")
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
PATH_CHANGES = {"mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "link",
                "linkat", "symlink", "symlinkat", "truncate", "fchmodat", "chmod", "fchownat", "chown"}


def traced(log: str) -> tuple[set[str], set[str], set[str], list[str], set[str]]:
    """System calls made, socket families opened, paths written, writable executable mappings, and the
    kinds of netlink requests sent."""
    calls, families, written, wx, netlink = set(), set(), set(), [], set()
    for line in log.splitlines():
        match = CALL.match(line)
        if not match:
            continue
        name = match["name"] or match["resumed"]
        # A thread torn down by the exit can show strace a negative number (here -512, ERESTARTSYS) where a
        # syscall number should be, printed as syscall_0xffff...: no call the program made, nothing for a filter.
        if name.startswith("syscall_0x") and int(name.removeprefix("syscall_"), 16) >= 1 << 63:
            continue
        calls.add(name)
        args = match["args"] or ""
        if name == "socket" and args:
            families.add(args.split(",")[0])
        if name == "sendto" and "nlmsg_type=" in args:
            netlink.update(re.findall(r"nlmsg_type=(\w+)", args))
        paths = re.findall(r'"(/[^"]*)"', args)
        if (name in ("open", "openat", "creat") and WRITE_FLAGS.search(args)) or name in PATH_CHANGES:
            written.update(paths)
        if name in ("mmap", "mprotect") and "PROT_WRITE" in args and "PROT_EXEC" in args:
            wx.append(line)
    return calls, families, written, wx, netlink


@pytest.fixture(scope="module")
def unit(rendered_members) -> dict[str, list[str]]:
    return directives(written_file(rendered_members["static-3.6-amd64/etcd-0"], UNIT))


# Every etcd line the set-up installed (test_real_etcd requires at least 3.4 and 3.5).
@pytest.mark.parametrize("line", sorted(BINARIES), ids=lambda line: f"{line[0]}.{line[1]}")
def test_real_etcd_starts_serves_and_stops_within_what_the_unit_allows(unit, line, tmp_path):
    binary = real_binary(BINARIES[line])
    version = version_of(binary)
    # An address no sandbox member takes (they use 127.0.N.10 for N up to 7).
    member = MemberPlan(0, "etcd-0", "127.0.97.10", "127.0.97.10", "local", 0)
    paths = local_paths(tmp_path, member)
    client = write_pki(tmp_path, (member,))
    cluster = ClusterSettings(name="hardening", token="hardening", version=version, bootstrap=Bootstrap.STATIC,
                              members=(member,), heartbeat_ms=100, election_ms=1000,
                              quota_backend_bytes=rendering.quota_backend_bytes(8))
    Path(paths.config_file).write_text(rendering.to_yaml(rendering.etcd_config(cluster, member, paths)))

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    log = tmp_path / "strace.log"
    process = subprocess.Popen(
        [tool("strace"), "-f", "-qq", "-s", "256", "-o", str(log), str(binary), "--config-file", paths.config_file],
        env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "etcd.log").open("w"),
    )
    try:
        # Type=notify: systemd starts nothing after etcd until this arrives.
        assert b"READY=1" in notify.recv(4096)
        with local_session() as session:
            base = f"https://{member.ip}:2379"
            tls = {"verify": str(client.ca), "cert": (str(client.cert), str(client.key)), "timeout": 10}
            put = session.post(f"{base}/v3/kv/put", json={"key": "aGFyZGVuZWQ=", "value": "eWVz"}, **tls)
            assert put.status_code == 200, put.text
            got = session.post(f"{base}/v3/kv/range", json={"key": "aGFyZGVuZWQ="}, **tls).json()
            assert got["kvs"][0]["value"] == "eWVz"
            assert session.get(f"http://{member.ip}:2381/health", timeout=10).status_code == 200
    finally:
        # Stopped as systemd stops it: SIGTERM to etcd itself (the first pid strace logs); strace then exits.
        first = log.read_text().split(None, 1)
        os.kill(int(first[0]), signal.SIGTERM) if first else process.kill()
        process.wait(timeout=60)
        notify.close()

    calls, families, written, wx, netlink = traced(log.read_text())
    assert "fsync" in calls or "fdatasync" in calls, "the trace holds etcd's own work"
    assert calls - {"exit", "exit_group", "execve"} <= allowed_calls(unit), calls - allowed_calls(unit)
    allowed_families = set(unit["RestrictAddressFamilies"][0].split())
    # The one family the unit refuses: etcd asks the routing table for a default host to advertise, and on
    # failure logs "failed to detect default host" and goes on; with advertise URLs set it never uses one
    # (server/etcdmain/etcd.go, UpdateDefaultClusterFromName; pkg/netutil/routes_linux.go, GetDefaultHost).
    assert families - allowed_families <= {"AF_NETLINK"}, families
    assert netlink <= {"RTM_GETROUTE", "RTM_GETADDR", "RTM_GETLINK"}, netlink
    assert "AF_UNIX" in families, "the readiness notice goes over AF_UNIX"
    writable = [Path(p) for value in unit["ReadWritePaths"] for p in value.split()]
    assert writable == [Path(rendering.Paths().data_mount)]
    outside = {p for p in written if not Path(p).is_relative_to(paths.data_mount)}
    assert outside == set(), "etcd writes only below its data mount, the one path the unit makes writable"
    assert wx == [], "MemoryDenyWriteExecute=yes holds: no writable executable mapping"


def test_the_defrag_service_writes_nothing_and_reaches_no_metadata_service(rendered_members):
    for name, user_data in rendered_members.items():
        unit = directives(written_file(user_data, DEFRAG_UNIT))
        assert unit["ProtectSystem"] == ["strict"], name
        assert not {"ReadWritePaths", "StateDirectory", "RuntimeDirectory", "LogsDirectory"} & set(unit), name
        denied = {ipaddress.ip_network(a) for value in unit["IPAddressDeny"] for a in value.split()}
        assert denied == {ipaddress.ip_network(a) for a in METADATA_ADDRESSES}, name
        # Its one lock is the data mount opened for reading, which a read-only file system allows.
        script = written_file(user_data, unit["ExecStart"][0].split()[0])
        assert f"readonly LOCK_DIR={rendering.Paths().data_mount}" in script and 'exec 9<"$LOCK_DIR"' in script

"""Scenario tests on real etcd clusters started by the sandbox: loopback only, each on a fresh sandbox,
bounded in time, every process stopped even when a test fails."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from etcd_stack import config
from etcd_stack.config import Bootstrap
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.cluster import Sandbox
from etcd_stack.sandbox.gateway import GatewayError, health, local_session
from etcd_stack.sandbox.processes import alive
from etcd_stack.sandbox.workload import Writer

ROOT = Path(__file__).resolve().parents[2]
ELECTION_MS = 1000


def stack_config(size: int = 3, **settings: str) -> config.StackConfig:
    """The sandbox stack's config; keyword arguments are further etcd: keys."""
    return config.load({"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:clusterSize": str(size),
                        "etcd:electionMs": str(ELECTION_MS), "etcd:bootstrap": "static",
                        **{f"etcd:{key}": value for key, value in settings.items()}}, "test")


def pids_of(box: Sandbox) -> list[int]:
    return [pid for pid in (box.pid(m) for m in box.members) if pid]


@pytest.fixture
def make_sandbox(tmp_path) -> Iterator:
    made: list[Path] = []

    def make(bootstrap: Bootstrap = Bootstrap.STATIC, size: int = 3, **settings: str) -> Sandbox:
        directory = tmp_path / f"sandbox-{len(made)}"
        made.append(directory)
        return sandbox.up(directory, "test", stack_config(size, **settings), bootstrap, report=lambda _: None,
                          timeout_s=60)

    yield make
    for directory in made:
        if (directory / sandbox.STATE_FILE).exists():
            sandbox.down(directory)


def leader(box: Sandbox) -> str:
    return box.leader()


def member_ids(box: Sandbox) -> dict[str, str]:
    gateway = box.gateway()
    try:
        return {name: member_id for member_id, name in gateway.members(box.running()[0].ip).items()}
    finally:
        gateway.close()


def stored(box: Sandbox, prefix: str = "w/") -> dict[str, str]:
    gateway = box.gateway()
    try:
        return gateway.range_prefix(box.running()[0].ip, prefix)
    finally:
        gateway.close()


def write(box: Sandbox, key: str, value: str, timeout_s: float = 20) -> None:
    """A client with every endpoint: retries through any running member until the write is acknowledged
    (a write in flight when the leader dies can hang until etcd's request timeout)."""
    gateway = box.gateway(timeout=2)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for member in box.running():
                try:
                    gateway.put(member.ip, key, value)
                    return
                except (requests.RequestException, GatewayError):
                    continue
            time.sleep(0.1)
    finally:
        gateway.close()
    raise AssertionError(f"{key} not acknowledged within {timeout_s}s")


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s}s")


# --- the command line, as the README runs it ------------------------------------------------

def etcd_stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etcd_stack.cli", *args], capture_output=True, text=True,
                          timeout=180, check=False)


def test_up_status_down_from_the_command_line(tmp_path):
    directory = tmp_path / "sandbox"
    try:
        result = etcd_stack("sandbox", "up", "--stack", "dev", "--dir", str(directory))
        assert result.returncode == 0, result.stderr
        out = result.stdout
        # The dev stack pins 3.6.14; the sandbox runs that very version from the project's cache.
        pinned = binaries.directory("3.6.14") / "etcd"
        assert out.startswith(f"etcd 3.6.14 from {pinned} (the version the dev stack pins on AWS)\n")
        assert "sandbox 'dev': 3 members, static bootstrap" in out
        assert "ready: 3 members healthy in " in out
        assert f"source {directory.resolve() / 'etcdctl.env'}" in out
        box = Sandbox.load(directory)
        assert all((directory / "members" / m.name / "pid").exists() for m in box.members)
        env = (directory / "etcdctl.env").read_text()
        assert "export ETCDCTL_ENDPOINTS=https://127.0.1.10:2379,https://127.0.2.10:2379,https://127.0.3.10:2379" in env
        assert f"export ETCDCTL_CERT={directory.resolve() / 'pki' / 'operator.crt'}" in env

        status = etcd_stack("sandbox", "status", "--dir", str(directory))
        assert status.returncode == 0, status.stdout
        processes, cluster = status.stdout.split("\n\n")
        pids = pids_of(box)
        assert len(pids) == 3
        assert [line.split()[:3] for line in processes.splitlines()[1:]] == [
            [member.name, member.ip, str(pid)] for member, pid in zip(box.members, pids, strict=True)]
        rows = [line.split() for line in cluster.splitlines()[1:4]]
        assert [row[0] for row in rows] == ["etcd-0", "etcd-1", "etcd-2"]
        assert all(row[1:3] == ["200", "healthy"] for row in rows)
        assert sorted(row[3] for row in rows) == ["follower", "follower", "leader"]
        assert cluster.splitlines()[-1] == "alarms: none"
    finally:
        down = etcd_stack("sandbox", "down", "--dir", str(directory))
    assert down.returncode == 0 and down.stdout.startswith("stopped etcd-0, etcd-1, etcd-2")
    assert not any(alive(pid) for pid in pids)
    assert etcd_stack("sandbox", "down", "--dir", str(directory)).stdout.strip() == "nothing was running"


def test_etcdctl_works_with_the_written_environment(make_sandbox):
    box = make_sandbox()
    env_file = box.directory / "etcdctl.env"
    script = (f"source {env_file} && etcdctl put greeting hello && etcdctl get greeting --print-value-only"
              f" && etcd-stack sandbox status --dir {box.directory} >/dev/null")
    # A new user's shell: no virtualenv activated, only the system's PATH.
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(box.directory)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["OK", "hello"]


def test_a_member_that_cannot_start_is_shown_and_the_others_are_stopped(tmp_path):
    directory = tmp_path / "sandbox"
    try:
        assert etcd_stack("sandbox", "up", "--stack", "dev", "--dir", str(directory)).returncode == 0
        assert etcd_stack("sandbox", "down", "--dir", str(directory)).returncode == 0
        # etcd refuses a wrongly typed value at start: etcd-1 exits, the others are running by then.
        config_file = directory / "members" / "etcd-1" / "etcd.yaml"
        config_file.write_text(config_file.read_text().replace("heartbeat-interval: 100", "heartbeat-interval: often"))
        result = etcd_stack("sandbox", "up", "--stack", "dev", "--dir", str(directory), "--timeout", "20")
        assert result.returncode == 1
        assert "etcd-stack sandbox up: etcd-1 exited; the last lines of its log:" in result.stderr
        assert "heartbeat-interval" in result.stderr
        assert "stopped the other members" in result.stderr
        assert Sandbox.load(directory).running() == []
    finally:
        etcd_stack("sandbox", "down", "--dir", str(directory))


def test_addresses_in_use_are_named_before_anything_starts(tmp_path):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.2.10", 2381))
    blocker.listen()
    directory = tmp_path / "sandbox"
    try:
        result = etcd_stack("sandbox", "up", "--stack", "dev", "--dir", str(directory))
    finally:
        blocker.close()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "etcd-stack sandbox up: 127.0.2.10:2381 already in use (another sandbox? `sandbox down --dir` it first)")
    assert Sandbox.load(directory).running() == []


def test_etcd_bin_chooses_the_binary_and_the_configuration_follows_its_version(tmp_path, monkeypatch):
    etcd34 = Path(sys.executable).parent.parent / "etcd-3.4" / "usr" / "bin" / "etcd"
    monkeypatch.setenv("ETCD_BIN", str(etcd34))
    directory = tmp_path / "sandbox"
    try:
        box = sandbox.up(directory, "test", stack_config(1), Bootstrap.STATIC, report=lambda _: None)
        assert box.version == str(sandbox.etcd_version(etcd34)) and box.version.startswith("3.4.")
        config_text = Path(box.paths(box.members[0]).config_file).read_text()
        assert "enable-grpc-gateway: true" in config_text
        assert stored(box) == {}
    finally:
        sandbox.down(directory)


def test_etcd_bin_must_be_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(tmp_path / "missing"))
    with pytest.raises(sandbox.SandboxError, match=r"ETCD_BIN: .* is not an executable file"):
        sandbox.find_etcd()


# --- TLS and health --------------------------------------------------------------------------

def test_tls_is_enforced_and_health_answers_without_a_certificate(make_sandbox):
    box = make_sandbox()
    first = box.members[0]
    with local_session() as session, pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://{first.ip}:2379/health", verify=str(box.client.ca), timeout=5)
    assert health(first.ip).status_code == 200 and health(first.ip).healthy

    # With two of three members gone, the last one has no leader, and says so to the load balancer.
    for member in box.members[1:]:
        box.stop(member, signal.SIGKILL)
    wait_until(lambda: health(first.ip).status_code == 503, 10 * ELECTION_MS / 1000, "/health did not turn 503")
    assert not health(first.ip).healthy


# --- bootstrap --------------------------------------------------------------------------------

@pytest.mark.parametrize("bootstrap", list(Bootstrap))
def test_both_bootstrap_modes_form_the_cluster(make_sandbox, bootstrap):
    box = make_sandbox(bootstrap)
    assert sorted(member_ids(box)) == ["etcd-0", "etcd-1", "etcd-2"]
    assert all(health(m.ip).healthy for m in box.members)
    config_text = Path(box.paths(box.members[0]).config_file).read_text()
    if bootstrap is Bootstrap.DISCOVERY:
        assert box.discovery_url.startswith("http://127.0.100.1:2379/v2/keys/discovery/")
        assert f"discovery: {box.discovery_url}" in config_text
        # Bootstrapped members never ask again, so the backend is stopped.
        assert not (box.directory / "discovery" / "pid").exists()
    else:
        assert "initial-cluster: etcd-0=https://127.0.1.10:2380" in config_text


# --- failures -----------------------------------------------------------------------------------

def test_writes_resume_after_the_leader_is_killed_and_none_acknowledged_is_lost(make_sandbox):
    box = make_sandbox()
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        old_leader = leader(box)
        killed_at = time.monotonic()
        box.stop(box.member(old_leader), signal.SIGKILL)
        gap = writer.wait_for_writes_after(killed_at, count=20)
    new_leader = leader(box)
    assert new_leader != old_leader
    assert gap < 10 * ELECTION_MS / 1000
    missing = set(writer.acknowledged) - set(stored(box))
    assert not missing, sorted(missing)[:5]


def test_a_killed_member_restarted_with_its_data_rejoins_as_itself(make_sandbox):
    box = make_sandbox()
    before = member_ids(box)
    victim = box.members[1]
    box.stop(victim, signal.SIGKILL)
    write(box, "while-away", "written")
    box.start(victim)
    box.wait_healthy([victim], timeout_s=30)
    assert member_ids(box) == before
    gateway = box.gateway()
    try:
        wait_until(lambda: gateway.get(victim.ip, "while-away") == "written", 10, "the member did not catch up")
    finally:
        gateway.close()


def test_quorum_one_down_serves_two_down_refuses_and_nothing_acknowledged_is_lost(make_sandbox):
    box = make_sandbox()
    gateway = box.gateway(timeout=3)
    acknowledged = []
    try:
        for i in range(20):
            write(box, f"w/a{i:03d}", "x")
            acknowledged.append(f"w/a{i:03d}")
        box.stop(box.members[2], signal.SIGKILL)
        for i in range(20):
            write(box, f"w/b{i:03d}", "x")
            acknowledged.append(f"w/b{i:03d}")
        box.stop(box.members[1], signal.SIGKILL)
        # etcd gives up on a write without quorum after its request timeout (5 s + 2 elections).
        with pytest.raises((requests.RequestException, GatewayError)):
            gateway.put(box.members[0].ip, "w/refused", "x", timeout=15)
        assert health(box.members[0].ip, timeout=5).status_code == 503
        for member in box.members[1:]:
            box.start(member)
        box.wait_healthy(box.members, timeout_s=30)
        wait_until(lambda: set(acknowledged) <= set(stored(box)), 10, "acknowledged writes are missing")
    finally:
        gateway.close()


def test_all_members_stopped_and_started_again_keep_members_and_data(make_sandbox):
    box = make_sandbox()
    gateway = box.gateway()
    try:
        for i in range(50):
            gateway.put(box.members[i % 3].ip, f"w/{i:03d}", str(i))
    finally:
        gateway.close()
    before_ids, before_data = member_ids(box), stored(box)
    pids = pids_of(box)
    sandbox.down(box.directory)
    assert not any(alive(pid) for pid in pids)
    again = sandbox.up(box.directory, "test", stack_config(), Bootstrap.STATIC, report=lambda _: None)
    assert member_ids(again) == before_ids
    assert stored(again) == before_data and len(before_data) == 50

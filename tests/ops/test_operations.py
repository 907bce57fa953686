"""Day-2 operations proven on real etcd in the sandbox, each the procedure AWS runs, through the sandbox's
transport and the scripts every member ships: backup and restore, replacing a member, refresh-tls with
rotated keys, defragmentation, rolling restarts and a rolling upgrade."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from etcd_stack.config import Bootstrap
from etcd_stack.member import rendering
from etcd_stack.ops import procedures as operations
from etcd_stack.ops import rolling
from etcd_stack.ops.transport import OperationError, run_script
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.cluster import Sandbox, SandboxError
from etcd_stack.sandbox.gateway import Gateway, GatewayError
from etcd_stack.sandbox.transport import SandboxTransport
from etcd_stack.sandbox.workload import Writer
from tests.sandbox.test_sandbox import (
    ELECTION_MS,
    etcd_stack,
    leader,
    make_sandbox,
    member_ids,
    stack_config,
    stored,
    wait_until,
    write,
)

__all__ = ["make_sandbox"]  # the fixture, shared with test_sandbox
ETCD_3_4 = Path(sys.executable).parent.parent / "etcd-3.4" / "usr" / "bin" / "etcd"
# The exact versions the test set-up installs (etcd_stack/sandbox/binaries.py): the newest 3.5, 3.6, 3.7.
TESTED = {version.rsplit(".", 1)[0]: binaries.directory(version) / "etcd" for version in binaries.tested_versions()}
T = TypeVar("T")
# Writes may pause for an election, never longer.
LONGEST_PAUSE_S = 5 * ELECTION_MS / 1000


def member_data(box: Sandbox) -> dict[str, list[str]]:
    return {m.name: sorted(p.name for p in Path(box.paths(m).data_dir).iterdir()) for m in box.members}


def quiet(_: str) -> None:
    pass


def take_backup(box: Sandbox) -> Path:
    return Path(operations.backup(SandboxTransport(box), report=quiet).removeprefix("file://"))


def systemctl_log(box: Sandbox, member) -> list[str]:
    path = box.home(member) / "systemctl.log"
    return path.read_text().splitlines() if path.exists() else []


# --- backups and restore ----------------------------------------------------------------------

def test_backup_then_restore_brings_back_exactly_the_keys_written_before(make_sandbox):
    box = make_sandbox()
    written = {f"k/{i:03d}": f"value {i}" for i in range(50)}
    for key, value in written.items():
        write(box, key, value)
    result = etcd_stack("backup", "--sandbox", str(box.directory))
    assert result.returncode == 0, result.stderr
    (snapshot,) = box.backups.glob("*.db")
    assert result.stdout == f"  {leader(box)}  snapshot file://{snapshot} ({snapshot.stat().st_size} bytes), " \
                            "taken by the leader\n"
    assert snapshot.name.endswith(f"-{leader(box)}.db")
    listed = etcd_stack("snapshots", "--sandbox", str(box.directory))
    assert listed.stdout == f"file://{snapshot}  {snapshot.stat().st_size} bytes\n1 snapshots\n"
    write(box, "k/after-the-backup", "lost with the cluster")
    old_ids = member_ids(box)

    result = etcd_stack("restore", "--sandbox", str(box.directory), "--snapshot", snapshot.name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stopped the backup timers of 3 members\nstopped etcd on 3 members\n")
    assert "restored: 3 members healthy, a new cluster (restore-" in result.stdout
    assert stored(box, "k/") == written
    assert set(member_ids(box)) == set(old_ids) and member_ids(box) != old_ids
    for member in box.members:
        # The timer stopped before etcd, and started again once the cluster was healthy.
        assert systemctl_log(box, member) == ["stop etcd-backup.timer", "stop etcd.service",
                                              "start --no-block etcd.service", "start etcd-backup.timer"]
        assert (box.home(member) / "etcd-backup.timer.active").exists()
        kept = [p.name for p in box.home(member).iterdir() if p.name.startswith("data.before-restore-")]
        assert len(kept) == 1


def test_a_destroyed_cluster_is_restored_with_force(make_sandbox):
    box = make_sandbox()
    write(box, "k/kept", "in the snapshot")
    snapshot = take_backup(box)
    # The cluster is destroyed: every member gone, and its data with it.
    for member in box.members:
        box.stop(member, signal.SIGKILL)
        shutil.rmtree(box.paths(member).data_dir)
    refused = etcd_stack("restore", "--sandbox", str(box.directory), "--snapshot", str(snapshot))
    assert refused.returncode == 1
    assert refused.stderr == ("etcd-stack restore: etcd-0 is unhealthy (- not listening): nothing was changed; "
                              "--force goes on anyway\n")
    result = etcd_stack("restore", "--sandbox", str(box.directory), "--snapshot", str(snapshot), "--force")
    assert result.returncode == 0, result.stderr
    assert stored(box, "k/") == {"k/kept": "in the snapshot"}


def test_snapshots_are_staged_on_the_data_volume_never_in_tmp(make_sandbox):
    box = make_sandbox()
    write(box, "k/1", "one")
    # A script that staged in TMPDIR (or /tmp) would fail here.
    nowhere = {"TMPDIR": str(box.directory / "no-such-directory")}
    for member in box.members:
        box.run_script(member, "etcd-backup", env=nowhere)
    (snapshot,) = box.backups.glob("*.db")
    for member in box.members:
        box.stop(member)
    for member in box.members:
        box.run_script(member, "etcd-restore", f"file://{snapshot}", "staged-token", env=nowhere)
        # Nothing staged is left behind on the volume either.
        assert not [p for p in box.home(member).iterdir() if p.name.startswith((".etcd-backup.", ".etcd-restore."))]


def test_only_the_leader_takes_the_snapshot_and_records_it(make_sandbox):
    box = make_sandbox()
    write(box, "greeting", "hello")
    head = leader(box)
    for member in box.members:
        log = box.run_script(member, "etcd-backup")
        state = Path(box.paths(member).backup_state_dir) / "last-success"
        if member.name == head:
            assert "etcd-backup: snapshot file://" in log
            stamp, where = state.read_text().split()
            assert where == f"file://{box.backups}/{stamp}-{head}.db"
            assert (box.backups / f"{stamp}-{head}.db").stat().st_size > 0
        else:
            assert f"{member.name} is not the leader" in log
            assert not state.exists()
    assert len(list(box.backups.glob("*.db"))) == 1


def test_restore_refuses_while_the_member_runs(make_sandbox):
    box = make_sandbox()
    snapshot = take_backup(box)
    with pytest.raises(SandboxError, match="etcd-0 is running: stop etcd on every member first"):
        box.run_script(box.members[0], "etcd-restore", f"file://{snapshot}", "new-token")


def test_a_damaged_snapshot_is_refused_and_the_data_left_alone(make_sandbox):
    box = make_sandbox()
    snapshot = take_backup(box)
    damaged = snapshot.with_name("damaged.db")
    damaged.write_bytes(snapshot.read_bytes()[: snapshot.stat().st_size // 2])
    for member in box.members:
        box.stop(member)
    before = member_data(box)
    with pytest.raises(SandboxError, match="etcd-restore on etcd-0 failed"):
        box.run_script(box.members[0], "etcd-restore", f"file://{damaged}", "new-token")
    assert member_data(box) == before


# --- a member that lost its data ------------------------------------------------------------

def test_a_member_that_lost_its_data_rejoins_while_writes_go_on(make_sandbox):
    box = make_sandbox()
    victim = next(m for m in box.members if m.name != leader(box))
    old_ids = member_ids(box)
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        result = etcd_stack("replace-member", "--sandbox", str(box.directory), "--member", victim.name)
        assert result.returncode == 0, result.stderr
        assert "added as a learner" in result.stdout and "promoted to a voting member" in result.stdout
        writer.wait_for_writes_after(time.monotonic(), count=20)
    # The cluster kept its quorum throughout: writes never waited longer than an election.
    assert writer.longest_pause() < LONGEST_PAUSE_S
    new_ids = member_ids(box)
    assert set(new_ids) == set(old_ids) and new_ids[victim.name] != old_ids[victim.name]
    assert {name: new_ids[name] for name in new_ids if name != victim.name} == {
        name: old_ids[name] for name in old_ids if name != victim.name}
    acknowledged = set(writer.acknowledged)
    assert acknowledged <= set(stored(box))

    gateway = box.gateway()

    def caught_up() -> bool:
        # A member still applying the leader's snapshot may not answer in time: not caught up yet.
        try:
            return acknowledged <= set(gateway.range_prefix(victim.ip, "w/", serializable=True))
        except (requests.RequestException, GatewayError):
            return False

    try:
        wait_until(caught_up, 20, "the new member did not catch up")
        assert gateway.members(victim.ip)[new_ids[victim.name]] == victim.name
    finally:
        gateway.close()


def test_replace_member_names_an_unknown_member(make_sandbox):
    box = make_sandbox()
    result = etcd_stack("replace-member", "--sandbox", str(box.directory), "--member", "etcd-9")
    assert (result.returncode, result.stderr) == (
        2, "etcd-stack replace-member: --member: 'etcd-9' is not one of etcd-0, etcd-1, etcd-2\n")


# --- rolling changes --------------------------------------------------------------------------

def test_a_rolling_restart_with_new_settings_keeps_writes_flowing(make_sandbox):
    box = make_sandbox()
    faster = stack_config()
    faster = type(faster)(**{**faster.__dict__, "heartbeat_ms": 50, "election_ms": 600})
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        rolling.roll(box, report=lambda _: None, cfg=faster)
        writer.wait_for_writes_after(time.monotonic(), count=20)
    assert writer.longest_pause() < LONGEST_PAUSE_S
    assert set(writer.acknowledged) <= set(stored(box))
    for member in box.members:
        text = Path(box.paths(member).config_file).read_text()
        assert "heartbeat-interval: 50\n" in text and "election-timeout: 600\n" in text


@pytest.mark.parametrize(("old", "new"), [(ETCD_3_4, TESTED["3.5"]), (TESTED["3.5"], TESTED["3.6"]),
                                          (TESTED["3.6"], TESTED["3.7"])], ids=["3.4-3.5", "3.5-3.6", "3.6-3.7"])
def test_a_rolling_upgrade_to_the_next_minor_version_keeps_every_write(old, new, tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(old))
    directory = tmp_path / "upgrade"
    box = sandbox.up(directory, "test", stack_config(), Bootstrap.STATIC, report=lambda _: None)
    try:
        gateway = box.gateway()
        before, after = str(sandbox.etcd_version(old)), str(sandbox.etcd_version(new))
        assert {gateway.status(m.ip)["version"] for m in box.members} == {before}
        with Writer(box) as writer:
            writer.wait_for_writes_after(time.monotonic(), count=20)
            rolling.roll(box, report=lambda _: None, binary=new)
            writer.wait_for_writes_after(time.monotonic(), count=20)
        assert {gateway.status(m.ip)["version"] for m in box.members} == {after}
        gateway.close()
        assert writer.longest_pause() < LONGEST_PAUSE_S
        assert set(writer.acknowledged) <= set(stored(box))
        assert Sandbox.load(directory).version == after
    finally:
        sandbox.down(directory)


def test_a_version_skip_is_refused_before_any_member_is_touched(tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(TESTED["3.5"]))
    directory = tmp_path / "skip"
    box = sandbox.up(directory, "test", stack_config(), Bootstrap.STATIC, report=lambda _: None)
    try:
        before, skip = str(sandbox.etcd_version(TESTED["3.5"])), str(sandbox.etcd_version(TESTED["3.7"]))
        pids = [box.pid(m) for m in box.members]
        refused = rf"--etcd-bin: {re.escape(before)} to {re.escape(skip)} skips a minor version; upgrade to 3\.6 first"
        with pytest.raises(SandboxError, match=refused):
            rolling.roll(box, report=lambda _: None, binary=TESTED["3.7"])
        assert [box.pid(m) for m in box.members] == pids
        assert Sandbox.load(directory).version == before
        assert (directory / "bin" / "etcd").resolve() == TESTED["3.5"].resolve()
    finally:
        sandbox.down(directory)


# --- certificate rotation -----------------------------------------------------------------------

def certificate(path: str):
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes())


@pytest.mark.parametrize("rotation", ["rotate-certs", "rotate-ca"])
def test_certificates_rotate_one_member_at_a_time_under_writes(make_sandbox, rotation, tmp_path):
    box = make_sandbox()
    before = {m.name: certificate(box.paths(m).cert_file).serial_number for m in box.members}
    keys_before = {m.name: Path(box.paths(m).key_file).read_text() for m in box.members}
    old_client = tmp_path / "old-client"
    shutil.copytree(box.directory / "pki", old_client)
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        result = etcd_stack("sandbox", rotation, "--dir", str(box.directory))
        writer.wait_for_writes_after(time.monotonic(), count=20)
    assert result.returncode == 0, result.stderr
    # No write needed more than one retry while members restarted with their new certificates.
    assert max(writer.retries.values(), default=0) <= 1, writer.retries
    assert set(writer.acknowledged) <= set(stored(box))
    for member in box.members:
        cert = certificate(box.paths(member).cert_file)
        assert cert.serial_number != before[member.name]
        # New keys, fetched by the script AWS members ship, which restarted etcd through systemctl.
        assert Path(box.paths(member).key_file).read_text() != keys_before[member.name]
        restarts = systemctl_log(box, member).count("restart etcd.service")
        assert restarts == (3 if rotation == "rotate-ca" else 1)
        cert.verify_directly_issued_by(certificate(str(box.directory / "pki" / "issuer.crt")))
    again = etcd_stack("refresh-tls", "--sandbox", str(box.directory))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("TLS files unchanged, healthy") == 3

    gateway = Gateway(str(box.client.ca), str(old_client / "operator.crt"), str(old_client / "operator.key"))
    try:
        if rotation == "rotate-ca":
            assert "CN=etcd etcd CA 2" in certificate(box.paths(box.members[0]).cert_file).issuer.rfc4514_string()
            assert Path(box.paths(box.members[0]).ca_file).read_text().count("BEGIN CERTIFICATE") == 1
            # A client certificate of the old CA is trusted nowhere any more.
            with pytest.raises(requests.exceptions.SSLError):
                gateway.put(box.members[0].ip, "old-ca", "refused")
        else:
            # The CA is the same, so an older client certificate still works.
            gateway.put(box.members[0].ip, "same-ca", "accepted")
    finally:
        gateway.close()


def test_backup_and_restore_work_on_etcd_3_4_with_its_etcdctl(tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(ETCD_3_4))
    directory = tmp_path / "etcd34"
    box = sandbox.up(directory, "test", stack_config(), Bootstrap.STATIC, report=lambda _: None)
    try:
        assert Path(box.paths(box.members[0]).script("etcd-backup")).read_text().count(
            "readonly SNAPSHOT_TOOL=etcdctl") == 1
        written = {f"k/{i}": str(i) for i in range(10)}
        for key, value in written.items():
            write(box, key, value)
        snapshot = take_backup(box)
        write(box, "k/later", "gone after the restore")
        operations.restore(SandboxTransport(box), snapshot.name, report=quiet)
        assert stored(box, "k/") == written
    finally:
        sandbox.down(directory)


# --- defragmentation --------------------------------------------------------------------------

def database_bytes(box: Sandbox) -> dict[str, int]:
    return {m.name: (Path(box.paths(m).data_dir) / "member" / "snap" / "db").stat().st_size for m in box.members}


def fragment(box: Sandbox) -> None:
    """Space to reclaim: many revisions of large values, then compacted away."""
    gateway = box.gateway(timeout=10)
    try:
        ip = box.members[0].ip
        for round_ in range(4):
            for i in range(40):
                revision = gateway.put(ip, f"bulk/{i:03d}", f"{round_}" * 20_000)
        gateway.call(ip, "kv/compaction", {"revision": revision, "physical": True})
    finally:
        gateway.close()


def under_writes(box: Sandbox, defragment: Callable[[], T]) -> tuple[T, Writer]:
    """Defragments a fragmented cluster while a writer writes: every database file is smaller afterwards and
    every acknowledged write reads back."""
    fragment(box)
    before = database_bytes(box)
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        outcome = defragment()
        writer.wait_for_writes_after(time.monotonic(), count=20)
    after = database_bytes(box)
    assert all(after[name] < before[name] for name in before), (before, after)
    assert set(writer.acknowledged) <= set(stored(box))
    return outcome, writer


def test_defrag_shrinks_every_database_one_member_at_a_time_under_writes(make_sandbox):
    box = make_sandbox()
    result, writer = under_writes(box, lambda: etcd_stack("defrag", "--sandbox", str(box.directory)))
    assert result.returncode == 0, result.stderr
    head = leader(box)
    order = [line.split()[0] for line in result.stdout.splitlines() if "bytes, healthy and caught up" in line]
    assert sorted(order) == sorted(m.name for m in box.members) and order[-1] == head
    assert result.stdout.endswith("defragmented 3 members, the leader last\n")
    assert max(writer.retries.values(), default=0) <= 1, writer.retries


def timer_fires(box: Sandbox, members: list) -> dict[str, subprocess.CompletedProcess]:
    """What each member's etcd-defrag.timer starts, all at once: the unit's ExecStart, run the way the sandbox
    runs a member's commands."""
    via = SandboxTransport(box)
    commands = {}
    for member in members:
        service, _ = rendering.defrag_units(box.settings(), box.paths(member))
        (command,) = [line.split("=", 1)[1].split() for line in service.splitlines() if line.startswith("ExecStart=")]
        commands[member.name] = command
    with ThreadPoolExecutor(len(members)) as pool:
        running = {name: pool.submit(via.run, name, command, 300) for name, command in commands.items()}
        return {name: future.result() for name, future in running.items()}


def defragmentations(box: Sandbox, member) -> list[tuple[datetime, datetime]]:
    """When the member's etcd defragmented its database, from start to end, as its own log says."""
    spans, started = [], None
    for line in box.log_file(member).read_text().splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        at = entry.get("ts") and datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
        if entry.get("msg") == "defragmenting":
            started = at
        elif entry.get("msg") == "finished defragmenting directory":
            spans.append((started, at))
    return spans


# The leader's etcd-defrag as it goes: "etcd-1: defragmenting (...)", then "etcd-1 defragmented: ...".
STEP = re.compile(r"^etcd-defrag: (etcd-\d+):? (defragmenting|defragmented):? ", re.MULTILINE)


def test_the_timer_on_every_member_at_once_defragments_one_member_at_a_time_under_writes(make_sandbox):
    box = make_sandbox()
    fired, _ = under_writes(box, lambda: timer_fires(box, box.members))
    head = leader(box)
    assert {name: result.returncode for name, result in fired.items()} == {m.name: 0 for m in box.members}, fired
    for name, result in fired.items():
        if name != head:
            assert result.stderr == f"etcd-defrag: {name} is not the leader: {head} defragments the cluster\n"
    # The leader's run: each member started and finished before the next, followers first, itself last.
    steps = STEP.findall(fired[head].stderr)
    order = [name for name, _ in steps[::2]]
    assert steps == [step for name in order for step in ((name, "defragmenting"), (name, "defragmented"))]
    assert sorted(order) == sorted(m.name for m in box.members) and order[-1] == head
    # etcd's own logs agree: one defragmentation per member, none overlapping another.
    spans = sorted(span for member in box.members for span in defragmentations(box, member))
    assert len(spans) == len(box.members), spans
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
    # Fired again soon after (as another member's timer would, had leadership moved): nothing left to give back.
    again = timer_fires(box, box.members)
    head = leader(box)
    assert again[head].returncode == 0, again[head].stderr
    assert again[head].stderr.splitlines()[-1] == (
        "etcd-defrag: nothing to defragment: no member has 10% of its database free")
    assert sum(len(defragmentations(box, member)) for member in box.members) == len(box.members)


def test_a_run_stops_when_leadership_moves_between_members(make_sandbox):
    box = make_sandbox()
    fragment(box)
    head = leader(box)
    run = subprocess.Popen(["bash", box.paths(box.member(head)).script("etcd-defrag")], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert run.stderr is not None
        first = run.stderr.readline()
        # Held still while its first member defragments, so that leadership moves before its next step.
        run.send_signal(signal.SIGSTOP)
        assert first.startswith("etcd-defrag: etcd-") and ": defragmenting (" in first, first
        busy = first.split()[1].rstrip(":")
        successor = next(m for m in box.members if m.name not in (head, busy))
        gateway = box.gateway(timeout=10)
        try:
            ids = {name: member_id for member_id, name in gateway.members(box.member(head).ip).items()}
            gateway.call(box.member(head).ip, "maintenance/transfer-leadership", {"targetID": ids[successor.name]})
        finally:
            gateway.close()
        wait_until(lambda: leader(box) == successor.name, 20, f"{successor.name} leading")
        run.send_signal(signal.SIGCONT)
        rest = run.stderr.read()
        assert run.wait(timeout=120) == 1, rest
    finally:
        if run.poll() is None:
            run.kill()
    assert rest.splitlines()[-1] == f"etcd-defrag: stopped after 1 members: leadership moved to {successor.name}"
    assert [len(defragmentations(box, member)) for member in box.members].count(1) == 1


def test_defrag_refuses_while_a_member_is_down_and_runs_only_on_the_leader(make_sandbox):
    box = make_sandbox()
    head = leader(box)
    follower = next(m for m in box.members if m.name != head)
    said = box.run_script(follower, "etcd-defrag")
    assert f"etcd-defrag: {follower.name} is not the leader: {head} defragments the cluster" in said
    # With no lag allowed at all every member counts as behind: the leader refuses before defragmenting any.
    fragment(box)
    before = database_bytes(box)
    with pytest.raises(SandboxError, match=r"etcd-defrag: refused: etcd-\d is behind \(raft index \d+, the leader"):
        box.run_script(box.member(head), "etcd-defrag", env={"ETCD_DEFRAG_MAX_LAG": "-1"})
    assert database_bytes(box) == before
    box.stop(follower)
    shown = etcd_stack("status", "--sandbox", str(box.directory))
    assert shown.returncode == 1
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()[1:]}
    assert rows[follower.name].split() == [follower.name, "-", "not", "listening", "-", "-", "-", "-"]
    assert rows[head].split()[1:4] == ["200", "healthy", "leader"]
    assert rows["alarms:"] == "alarms: none"
    result = etcd_stack("defrag", "--sandbox", str(box.directory))
    assert result.returncode == 1
    assert result.stderr.startswith(f"etcd-stack defrag: {follower.name} is unhealthy (- not listening)")
    # The timers of the members still running fire: the leader refuses, the other defers to it, nothing moves.
    fired = timer_fires(box, box.running())
    assert fired[head].returncode == 1
    assert fired[head].stderr.splitlines()[-1].startswith("etcd-defrag: refused: a member is unhealthy (https://")
    (other,) = [m.name for m in box.running() if m.name != head]
    assert (fired[other].returncode, fired[other].stderr.splitlines()[-1]) == (
        0, f"etcd-defrag: {other} is not the leader: {head} defragments the cluster")
    assert database_bytes(box) == before
    assert all(defragmentations(box, member) == [] for member in box.members)


# --- space: NOSPACE and its recovery ------------------------------------------------------------

QUOTA = 16 * 1024**2
FILL_VALUE = 100_000


def counted_by_etcd(via: SandboxTransport) -> dict[str, int]:
    """Each member's database size as etcd weighs it against the quota (bbolt's size, not the file's length:
    bbolt lengthens the file ahead of its data)."""
    return {row.name: row.db_size for row in operations.cluster_status(via)}


def allocated_bytes(box: Sandbox) -> dict[str, int]:
    """What each member's database file takes on disk."""
    return {m.name: (Path(box.paths(m).data_dir) / "member" / "snap" / "db").stat().st_blocks * 512
            for m in box.members}


@pytest.mark.parametrize("version", [*binaries.tested_versions(), "3.4.27"])
def test_a_full_quota_raises_nospace_and_recover_space_takes_writes_again(make_sandbox, monkeypatch, version):
    if version.startswith("3.4."):
        monkeypatch.setenv("ETCD_BIN", str(ETCD_3_4))
    box = make_sandbox(quotaBackendBytes=str(QUOTA), version=version)
    kept = {f"kept/{i}": f"value {i}" for i in range(5)}
    for key, value in kept.items():
        write(box, key, value)
    # Overwrites of the same few keys: history, which compaction frees (the live data stays far below the quota).
    last: dict[str, str] = {}
    gateway = box.gateway(timeout=10)
    try:
        with pytest.raises(GatewayError, match=r"HTTP 429 etcdserver: mvcc: database space exceeded"):
            for n in range(2 * QUOTA // FILL_VALUE):
                key, value = f"fill/{n % 8}", f"{n:06d}".ljust(FILL_VALUE, "x")
                gateway.put(box.members[0].ip, key, value)
                last[key] = value
    finally:
        gateway.close()
    via = SandboxTransport(box)
    head = leader(box)
    assert set(operations.alarms(via, head)) == {"NOSPACE"}
    with pytest.raises(OperationError, match=r"etcd-ctl put failed: .*mvcc: database space exceeded"):
        run_script(via, head, "etcd-ctl", "put", "refused", "while full", deadline_s=60)
    full, on_disk = counted_by_etcd(via), allocated_bytes(box)
    # The member that raised the alarm reached the quota; the others are close behind.
    assert max(full.values()) > QUOTA - 2 * FILL_VALUE and min(full.values()) > QUOTA * 3 // 4, full
    # Negative control: the plain defragmentation refuses a cluster whose /health fails on the alarm. etcd 3.4's
    # /health says no reason, so there the alarm looks like any other failure and recover-space needs --force.
    why, force = ("503 unhealthy", ["--force"]) if version.startswith("3.4.") else ("503 ALARM NOSPACE", [])
    for verb in ("defrag", "recover-space") if force else ("defrag",):
        refused = etcd_stack(verb, "--sandbox", str(box.directory))
        assert refused.returncode == 1 and f"is unhealthy ({why}): nothing was changed" in refused.stderr, refused

    result = etcd_stack("recover-space", "--sandbox", str(box.directory), *force)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("alarms: NOSPACE") and re.fullmatch(r"compacted the history to revision \d+", lines[1])
    order = [line.split()[0] for line in lines[2:5]]
    assert sorted(order) == sorted(m.name for m in box.members) and order[-1] == head
    assert lines[5:] == ["alarms: none; a write was taken again",
                         "space recovered: 3 members defragmented, the alarm disarmed, writes taken"]
    after = counted_by_etcd(via)
    assert all(size < QUOTA // 4 for size in after.values()), after
    assert all(allocated_bytes(box)[name] < on_disk[name] for name in on_disk), (on_disk, allocated_bytes(box))
    assert operations.alarms(via, head) == []
    write(box, "after/recovery", "taken")
    assert stored(box, "kept/") == kept
    # Every acknowledged value reads back. The put that met the quota may have been applied nonetheless: etcd
    # applies a put and then reports NOSPACE if the quota is gone (quotaApplierV3.Put), as 3.5 does here.
    refused_key, refused_value = key, value
    assert stored(box, "fill/") in (last, {**last, refused_key: refused_value})
    assert stored(box, "after/") == {"after/recovery": "taken"}
    assert stored(box, operations.PROBE_KEY) == {}

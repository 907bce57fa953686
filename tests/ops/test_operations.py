"""Day-2 operations proven on real etcd in the sandbox, each through the scripts every member ships:
backup and restore, replacing a member that lost its data, rolling restarts and a rolling upgrade."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from etcd_stack.config import Bootstrap
from etcd_stack.ops import procedures as operations
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.cluster import Sandbox, SandboxError
from etcd_stack.sandbox.gateway import Gateway
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
# Writes may pause for an election, never longer.
LONGEST_PAUSE_S = 5 * ELECTION_MS / 1000


def member_data(box: Sandbox) -> dict[str, list[str]]:
    return {m.name: sorted(p.name for p in Path(box.paths(m).data_dir).iterdir()) for m in box.members}


# --- backups and restore ----------------------------------------------------------------------

def test_backup_then_restore_brings_back_exactly_the_keys_written_before(make_sandbox):
    box = make_sandbox()
    written = {f"k/{i:03d}": f"value {i}" for i in range(50)}
    for key, value in written.items():
        write(box, key, value)
    result = etcd_stack("sandbox", "backup", "--dir", str(box.directory))
    assert result.returncode == 0, result.stderr
    (snapshot,) = box.backups.glob("*.db")
    assert result.stdout.startswith(f"snapshot {snapshot} (")
    assert snapshot.name.endswith(f"-{leader(box)}.db")
    write(box, "k/after-the-backup", "lost with the cluster")
    old_ids = member_ids(box)

    # The cluster is destroyed: every member gone, and its data with it.
    for member in box.members:
        box.stop(member, signal.SIGKILL)
        shutil.rmtree(box.paths(member).data_dir)

    result = etcd_stack("sandbox", "restore", "--dir", str(box.directory), "--snapshot", str(snapshot))
    assert result.returncode == 0, result.stderr
    assert "restored: 3 members healthy, a new cluster" in result.stdout
    assert stored(box, "k/") == written
    assert set(member_ids(box)) == set(old_ids) and member_ids(box) != old_ids


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
    snapshot = operations.backup(box)
    with pytest.raises(SandboxError, match="etcd-0 is running: stop etcd on every member first"):
        box.run_script(box.members[0], "etcd-restore", f"file://{snapshot}", "new-token")


def test_a_damaged_snapshot_is_refused_and_the_data_left_alone(make_sandbox):
    box = make_sandbox()
    snapshot = operations.backup(box)
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
        result = etcd_stack("sandbox", "replace-member", "--dir", str(box.directory), "--member", victim.name)
        assert result.returncode == 0, result.stderr
        assert "added back as a learner" in result.stdout and "promoted to a voting member" in result.stdout
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
    try:
        wait_until(lambda: acknowledged <= set(gateway.range_prefix(victim.ip, "w/", serializable=True)), 20,
                   "the new member did not catch up")
        assert gateway.members(victim.ip)[new_ids[victim.name]] == victim.name
    finally:
        gateway.close()


def test_replace_member_names_an_unknown_member(make_sandbox):
    box = make_sandbox()
    with pytest.raises(SandboxError, match=r"--member: 'etcd-9' is not one of etcd-0, etcd-1, etcd-2"):
        operations.replace_member(box, "etcd-9", report=lambda _: None)


# --- rolling changes --------------------------------------------------------------------------

def test_a_rolling_restart_with_new_settings_keeps_writes_flowing(make_sandbox):
    box = make_sandbox()
    faster = stack_config()
    faster = type(faster)(**{**faster.__dict__, "heartbeat_ms": 50, "election_ms": 600})
    with Writer(box) as writer:
        writer.wait_for_writes_after(time.monotonic(), count=20)
        operations.roll(box, report=lambda _: None, cfg=faster)
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
            operations.roll(box, report=lambda _: None, binary=new)
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
            operations.roll(box, report=lambda _: None, binary=TESTED["3.7"])
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
        cert.verify_directly_issued_by(certificate(str(box.directory / "pki" / "issuer.crt")))

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

"""The procedures' own rules, over a transport that records what it is asked: the order of the steps, the
refusal of an unhealthy cluster, the stop at the first failure, and the command line's exit codes."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest

from etcd_stack import cli
from etcd_stack.ops import procedures
from etcd_stack.ops.transport import BadInput, OperationError

SNAPSHOT = "s3://bucket/etcd/20261121T100012Z-etcd-1.db"


@dataclass
class Health:
    status_code: int
    healthy: bool
    reason: str = ""


@dataclass
class Recorded:
    """Members etcd-0..2, etcd-1 the leader; `fail` maps a command's start to (member, stderr)."""

    unhealthy: set[str] = field(default_factory=set)
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)
    where: str = "recorded"
    # Members etcd counts beyond those the transport reaches.
    extra: tuple[str, ...] = ()
    # Alarms raised until `etcd-ctl alarm disarm`; a NOSPACE alarm fails /health as etcd's does.
    alarms: tuple[str, ...] = ()

    def members(self) -> list[str]:
        return ["etcd-0", "etcd-1", "etcd-2"]

    def script(self, member: str, name: str) -> str:
        return f"/usr/local/sbin/{name}"

    def health(self, member: str) -> Health:
        # An unhealthy member heals once something was done to it (a restart, a restore).
        if member in self.unhealthy and not any(who == member for who, _ in self.changes()):
            return Health(503, False, "RAFT NO LEADER")
        if "NOSPACE" in self.raised():
            return Health(503, False, "ALARM NOSPACE")
        return Health(200, True)

    def raised(self) -> tuple[str, ...]:
        return () if any(text == "etcd-ctl alarm disarm" for _, text in self.asked) else self.alarms

    def run(self, member: str, command, deadline_s: float) -> subprocess.CompletedProcess:
        text = " ".join([PurePosixPath(command[0]).name, *command[1:]])
        self.asked.append((member, text))
        for start, (who, stderr) in self.fail.items():
            if text.startswith(start) and who == member:
                return subprocess.CompletedProcess(command, 1, "", stderr)
        stdout = stderr = ""
        if text.startswith("etcd-ctl endpoint status"):
            index = int(member[-1])
            stdout = json.dumps([{"Endpoint": "e", "Status": {"header": {"member_id": index, "revision": 4242},
                                                              "leader": 1,
                                                              "raftTerm": 2, "raftIndex": 9, "dbSize": 1}}])
        elif text.startswith("etcd-ctl member list"):
            stdout = json.dumps({"members": [{"ID": 100 + i, "name": name}
                                             for i, name in enumerate([*self.members(), *self.extra])]})
        elif text == "etcd-ctl alarm list":
            stdout = "".join(f"memberID:{100 + i} alarm:{alarm} \n" for i, alarm in enumerate(self.raised()))
        elif text == "etcd-snapshots":
            stdout = f"{SNAPSHOT} 20512\n"
        elif text == "etcd-backup":
            stderr = f"etcd-backup: snapshot {SNAPSHOT} (20512 bytes)\n"
        elif text.startswith("etcd-defrag"):
            stderr = "".join(f"etcd-defrag: {m} defragmented: 900 -> 300 bytes, healthy and caught up\n"
                             for m in ("etcd-0", "etcd-2", "etcd-1"))
        return subprocess.CompletedProcess(command, 0, stdout, stderr)

    def changes(self) -> list[tuple[str, str]]:
        """What was asked beyond reading state."""
        reads = ("etcd-ctl", "etcd-snapshots")
        return [(member, text) for member, text in self.asked if not text.startswith(reads)]


def test_restore_stops_the_backup_timers_first_and_starts_them_again_last():
    via = Recorded()
    procedures.restore(via, "20261121T100012Z-etcd-1.db", report=lambda _: None)
    steps = via.changes()
    members = via.members()
    token = steps[6][1].split()[-1]
    assert steps == [
        *[(m, "systemctl stop etcd-backup.timer") for m in members],
        *[(m, "systemctl stop etcd.service") for m in members],
        *[(m, f"etcd-restore {SNAPSHOT} {token}") for m in members],
        *[(m, "systemctl start --no-block etcd.service") for m in members],
        *[(m, "systemctl start etcd-backup.timer") for m in members],
    ]


def test_a_snapshot_the_destination_does_not_hold_is_bad_input_and_nothing_changes():
    via = Recorded()
    with pytest.raises(BadInput, match=r"--snapshot: 'old.db' is not one of the 1 snapshots"):
        procedures.restore(via, "old.db", report=lambda _: None)
    assert via.changes() == []


@pytest.mark.parametrize("procedure", [
    lambda via, force: procedures.backup(via, lambda _: None, force=force),
    lambda via, force: procedures.restore(via, SNAPSHOT, lambda _: None, force=force),
    lambda via, force: procedures.replace_member(via, "etcd-0", lambda _: None, force=force),
    lambda via, force: procedures.refresh_tls(via, lambda _: None, force=force),
    lambda via, force: procedures.defrag(via, lambda _: None, force=force),
    lambda via, force: procedures.recover_space(via, lambda _: None, force=force),
], ids=["backup", "restore", "replace-member", "refresh-tls", "defrag", "recover-space"])
def test_every_procedure_refuses_an_unhealthy_cluster_unless_forced(procedure):
    via = Recorded(unhealthy={"etcd-2"})
    with pytest.raises(OperationError, match=r"etcd-2 is unhealthy \(503 RAFT NO LEADER\): nothing was changed; "
                                             r"--force goes on anyway"):
        procedure(via, False)
    assert via.changes() == []
    forced = Recorded(unhealthy={"etcd-2"})
    procedure(forced, True)
    assert forced.changes()


def test_waiting_for_health_ends_at_its_deadline_without_sleeping_through_it():
    clock = iter(range(0, 1000, 30)).__next__
    with pytest.raises(OperationError, match=r"etcd-2 is not healthy after 180s"):
        procedures.wait_healthy(Recorded(unhealthy={"etcd-2"}), ["etcd-0", "etcd-2"], clock=clock,
                                sleep=lambda _: None)


def test_replacing_a_member_needs_only_the_others_healthy():
    via = Recorded(unhealthy={"etcd-0"})
    said = []
    procedures.replace_member(via, "etcd-0", report=said.append)
    assert via.changes() == [("etcd-0", step) for step in (
        "systemctl stop etcd.service", "etcd-join reset", "etcd-join prepare",
        "systemctl start --no-block etcd.service", "etcd-join promote")]
    assert said == ["etcd-0: etcd stopped", "  etcd-0  healthy"]


def test_refresh_tls_goes_followers_first_and_stops_at_the_first_failure_naming_the_member():
    via = Recorded(fail={"etcd-bootstrap refresh-tls": ("etcd-2", "etcd-bootstrap: giving up after 25 attempts: "
                                                                   "fetch_parameter")})
    said = []
    with pytest.raises(OperationError, match=r"etcd-2: etcd-bootstrap refresh-tls failed: etcd-bootstrap: giving "
                                             r"up after 25 attempts: fetch_parameter"):
        procedures.refresh_tls(via, report=said.append)
    assert [m for m, text in via.changes() if text.startswith("etcd-bootstrap")] == ["etcd-0", "etcd-2"]
    assert said == ["  etcd-0  TLS files unchanged, healthy"]


def test_defrag_runs_on_the_leader_and_reports_each_member():
    via = Recorded()
    said = []
    procedures.defrag(via, report=said.append)
    assert via.changes() == [("etcd-1", "etcd-defrag")]
    assert said == [f"  {m}  900 -> 300 bytes, healthy and caught up" for m in ("etcd-0", "etcd-2", "etcd-1")]


def test_recover_space_compacts_defragments_from_the_leader_disarms_and_proves_a_write():
    via = Recorded(alarms=("NOSPACE", "NOSPACE"))
    said = []
    procedures.recover_space(via, report=said.append)
    changing = [(member, text) for member, text in via.asked if not text.startswith(
        ("etcd-ctl endpoint status", "etcd-ctl alarm list"))]
    assert changing == [("etcd-1", "etcd-ctl compact 4242 --physical"), ("etcd-1", "etcd-defrag"),
                        ("etcd-1", "etcd-ctl alarm disarm"), ("etcd-1", f"etcd-ctl put {procedures.PROBE_KEY} "
                                                                        + via.asked[-2][1].split()[-1]),
                        ("etcd-1", f"etcd-ctl del {procedures.PROBE_KEY}")]
    assert said == ["alarms: NOSPACE NOSPACE", "compacted the history to revision 4242",
                    *[f"  {m}  900 -> 300 bytes, healthy and caught up" for m in ("etcd-0", "etcd-2", "etcd-1")],
                    "alarms: none; a write was taken again"]


def test_recover_space_leaves_a_corrupt_cluster_alone():
    via = Recorded(alarms=("NOSPACE", "CORRUPT"))
    with pytest.raises(OperationError, match=r"^etcd-1: alarm CORRUPT raised: not a question of space, nothing was "
                                             r"changed$"):
        procedures.recover_space(via, report=lambda _: None)
    assert via.changes() == [] and not [text for _, text in via.asked if "compact" in text or "disarm" in text]


def test_recover_space_says_when_the_live_data_alone_fills_the_quota(monkeypatch, capsys):
    via = Recorded(alarms=("NOSPACE",), fail={"etcd-ctl put": ("etcd-1", "Error: etcdserver: mvcc: database space "
                                                                         "exceeded")})
    code, _, err = run_cli(monkeypatch, capsys, via, "recover-space", "--stack", "dev")
    assert code == 1
    assert err == ("etcd-stack recover-space: writes still refused with databases of up to 300 bytes after "
                   "compaction and defragmentation: the live data alone fills the quota; delete keys or raise "
                   "etcd:quotaBackendBytes (etcd-1: etcd-ctl put failed: Error: etcdserver: mvcc: database space "
                   "exceeded)\n")


def test_recover_space_passes_on_a_write_refused_for_another_reason_as_it_is():
    via = Recorded(fail={"etcd-ctl put": ("etcd-1", "Error: context deadline exceeded")})
    with pytest.raises(OperationError, match=r"^etcd-1: etcd-ctl put failed: Error: context deadline exceeded$"):
        procedures.recover_space(via, report=lambda _: None)


def test_status_shows_each_member_and_one_etcd_counts_without_a_running_instance():
    said = []
    assert procedures.status(Recorded(), report=said.append)
    assert said[1:] == [f"etcd-{i}   200 healthy                {role:9} {2:>9} {9:>10} {1:>10}"
                        for i, role in enumerate(["follower", "leader", "follower"])] + ["alarms: none"]
    said = []
    assert not procedures.status(Recorded(extra=("etcd-3",)), report=said.append)
    assert "etcd-3   - no running member answers for it" in said


# --- the command line's exit codes ----------------------------------------------------------------

def run_cli(monkeypatch, capsys, via, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "transport", lambda args: via)
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_unknown_member_exits_2_with_one_line(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, Recorded(), "replace-member", "--stack", "dev", "--member", "etcd-9")
    assert (code, err) == (2, "etcd-stack replace-member: --member: 'etcd-9' is not one of etcd-0, etcd-1, etcd-2\n")


def test_a_missing_snapshot_exits_2(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, Recorded(), "restore", "--sandbox", "x", "--snapshot", "gone.db")
    assert code == 2 and err.startswith("etcd-stack restore: --snapshot: 'gone.db' is not one of") and \
        err.count("\n") == 1


def test_a_failed_operation_exits_1_with_the_members_own_error(monkeypatch, capsys):
    via = Recorded(fail={"etcd-defrag": ("etcd-1", "etcd-defrag: refused: etcd-0 is behind (raft index 10, the "
                                                   "leader at 5000)")})
    code, _, err = run_cli(monkeypatch, capsys, via, "defrag", "--stack", "dev")
    assert code == 1
    assert err == ("etcd-stack defrag: etcd-1: etcd-defrag failed: etcd-defrag: refused: etcd-0 is behind "
                   "(raft index 10, the leader at 5000)\n")


def test_no_instances_and_no_credentials_exit_2(monkeypatch, capsys, tmp_path):
    # No credentials anywhere, and any request that still went out would end on a closed loopback port.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    code = cli.main(["status", "--stack", "dev"])
    err = capsys.readouterr().err
    assert (code, err) == (2, "etcd-stack status: no AWS credentials: set AWS_PROFILE (or sign in with "
                              "`aws sso login`)\n")

    def nothing(args):
        raise BadInput("--stack dev: no running instances tagged etcd-cluster=etcd, pulumi-stack=dev and "
                       "etcd-member")

    monkeypatch.setattr(cli, "transport", nothing)
    assert cli.main(["backup", "--stack", "dev"]) == 2
    assert capsys.readouterr().err.startswith("etcd-stack backup: --stack dev: no running instances")


def test_a_sandbox_directory_without_a_sandbox_exits_2(capsys, tmp_path):
    assert cli.main(["status", "--sandbox", str(tmp_path)]) == 2
    assert "--sandbox: " in capsys.readouterr().err


def test_a_directory_without_machines_exits_2_with_one_line(capsys, tmp_path):
    code = cli.main(["status", "--machines", str(tmp_path)])
    err = capsys.readouterr().err
    assert (code, err) == (2, f"etcd-stack status: --machines: no machines in {tmp_path} (no fleet.json)\n")

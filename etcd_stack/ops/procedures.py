"""Day-2 procedures, each written once over a Transport (ops/transport.py): the same code operates a stack
on AWS through SSM Run Command and a sandbox through local processes. Each refuses to start on an unhealthy
cluster unless forced, reports per member, and stops at the first failure naming the member and why.
`roll`, `rotate_certs` and `rotate_ca` stand in, on a sandbox, for what `pulumi up` does on AWS."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from etcd_stack.ops.transport import BadInput, MemberHealth, OperationError, Result, Transport, call, run_script
from etcd_stack.sandbox import local
from etcd_stack.sandbox.cluster import (
    Sandbox,
)
from etcd_stack.sandbox.transport import SandboxTransport

Report = Callable[[str], None]
# Per call on a member: reading state, a script that restarts etcd, one that moves a whole database.
QUICK_S, RESTART_S, DATA_S = 60.0, 300.0, 3600.0
HEALTHY_WITHIN_S = 180.0


# --- reading the cluster ------------------------------------------------------------------------

@dataclass(frozen=True)
class MemberStatus:
    name: str
    health: str
    healthy: bool
    member_id: int | None = None
    leader_id: int | None = None
    raft_term: int | None = None
    raft_index: int | None = None
    db_size: int | None = None
    learner: bool = False
    version: str | None = None
    # The alarms and errors the member reports about itself (NOSPACE, CORRUPT).
    alarms: tuple[str, ...] = ()
    revision: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.member_id is not None and self.member_id == self.leader_id


def _json(result_stdout: str, member: str, what: str):
    try:
        return json.loads(result_stdout)
    except ValueError:
        raise OperationError(f"{member}: {what} did not answer JSON: {result_stdout.strip()[:200]!r}") from None


def member_status(transport: Transport, member: str) -> MemberStatus:
    """The member as the load balancer sees it, and as it reports itself over TLS (when it answers)."""
    checked = transport.health(member)
    verdict = f"{checked.status_code or '-'} {'healthy' if checked.healthy else checked.reason or 'unhealthy'}"
    if not checked.status_code:
        return MemberStatus(member, verdict, False)
    result = transport.run(member, [transport.script(member, "etcd-ctl"), "endpoint", "status", "--write-out",
                                    "json"], QUICK_S)
    if result.returncode != 0:
        return MemberStatus(member, verdict, checked.healthy)
    (entry,) = _json(result.stdout, member, "etcd-ctl endpoint status")
    status = entry["Status"]
    return MemberStatus(member, verdict, checked.healthy, status["header"]["member_id"], status.get("leader"),
                        status.get("raftTerm"), status.get("raftIndex"), status.get("dbSize"),
                        bool(status.get("isLearner")), status.get("version"),
                        tuple(str(error) for error in status.get("errors") or ()), status["header"].get("revision"))


def cluster_status(transport: Transport) -> list[MemberStatus]:
    return [member_status(transport, member) for member in transport.members()]


def require_healthy(transport: Transport, force: bool, members: list[str] | None = None,
                    tolerated: tuple[str, ...] = ()) -> None:
    """Refuses before anything changes while a member is unhealthy (for a reason other than those
    tolerated, as /health words them), unless forced."""
    if force:
        return
    for member in members if members is not None else transport.members():
        checked = transport.health(member)
        if not checked.healthy and checked.reason not in tolerated:
            raise OperationError(f"{member} is unhealthy ({checked.status_code or '-'} "
                                 f"{checked.reason or 'unhealthy'}): nothing was changed; --force goes on anyway")


def leader(transport: Transport) -> str:
    for row in cluster_status(transport):
        if row.is_leader:
            return row.name
    raise OperationError(f"{transport.where}: no member reports itself the leader")


def _on_the_leader(transport: Transport, script: str, force: bool) -> tuple[str, Result]:
    """Once the cluster is found healthy, the leader runs one of its scripts; the script checks again that it
    leads (leadership may move in between)."""
    require_healthy(transport, force)
    head = leader(transport)
    return head, run_script(transport, head, script, deadline_s=DATA_S)


def wait_healthy(transport: Transport, members: list[str], within_s: float = HEALTHY_WITHIN_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    deadline = clock() + within_s
    pending = list(members)
    while pending:
        pending = [member for member in pending if not transport.health(member).healthy]
        if pending and clock() > deadline:
            raise OperationError(f"{pending[0]} is not healthy after {within_s:g}s")
        if pending:
            sleep(1)


def status(transport: Transport, report: Report) -> bool:
    """Members, leader, raft term and index, database size, learners, health as the load balancer sees it,
    and the cluster's alarms. True when every member is healthy."""
    rows = cluster_status(transport)
    report(f"{'member':8} {'health (/health on 2381)':26} {'role':9} {'raft term':>9} {'raft index':>10} "
           f"{'db size':>10}")
    for row in rows:
        role = "-" if row.member_id is None else "learner" if row.learner else "leader" if row.is_leader \
            else "follower"
        report(f"{row.name:8} {row.health:26} {role:9} {_shown(row.raft_term):>9} {_shown(row.raft_index):>10} "
               f"{_shown(row.db_size):>10}")
    answering = [row.name for row in rows if row.member_id is not None]
    absent = []
    if answering:
        # Members etcd counts that no running instance (or sandbox member) stands for.
        listed = run_script(transport, answering[0], "etcd-ctl", "member", "list", "--write-out", "json",
                            deadline_s=QUICK_S).stdout
        known = set(transport.members())
        absent = [m.get("name") or f"{m['ID']:x}" for m in _json(listed, answering[0], "etcd-ctl member list")
                  .get("members", []) if m.get("name") not in known]
        for name in absent:
            report(f"{name:8} {'- no running member answers for it':26}")
        alarms = run_script(transport, answering[0], "etcd-ctl", "alarm", "list", deadline_s=QUICK_S).stdout.strip()
        report(f"alarms: {alarms or 'none'}")
    return all(row.healthy for row in rows) and not absent


def _shown(value: int | None) -> str:
    return "-" if value is None else str(value)


# --- backups ------------------------------------------------------------------------------------

SNAPSHOT_LINE = re.compile(r"etcd-backup: snapshot (\S+) \((\d+) bytes\)")


def backup(transport: Transport, report: Report, force: bool = False) -> str:
    """A snapshot now, taken by the leader with the script its timer runs; returns where it went."""
    head, result = _on_the_leader(transport, "etcd-backup", force)
    found = SNAPSHOT_LINE.search(result.stderr)
    if not found:
        raise OperationError(f"{head}: etcd-backup took no snapshot: {result.stderr.strip()[-300:]}")
    report(f"  {head}  snapshot {found[1]} ({found[2]} bytes), taken by the leader")
    return found[1]


def snapshots(transport: Transport) -> list[tuple[str, int]]:
    """What the backup destination holds, oldest first: (URL, bytes), asked of the first member that answers."""
    failures = []
    for member in transport.members():
        result = transport.run(member, [transport.script(member, "etcd-snapshots")], QUICK_S)
        if result.returncode == 0:
            return [(url, int(size)) for url, size in (line.split() for line in result.stdout.splitlines() if line)]
        failures.append(f"{member}: {(result.stderr or result.stdout).strip()[-200:]}")
    raise OperationError("no member could list the snapshots: " + "; ".join(failures))


def find_snapshot(transport: Transport, wanted: str) -> str:
    """The URL of a snapshot named by its URL, its name or a path ending in its name."""
    held = snapshots(transport)
    for url, _ in held:
        if wanted in (url, url.rsplit("/", 1)[-1], f"file://{wanted}") or Path(wanted).name == url.rsplit("/", 1)[-1]:
            return url
    raise BadInput(f"--snapshot: {wanted!r} is not one of the {len(held)} snapshots the backup destination holds "
                   "(`etcd-stack snapshots` lists them)")


def restore(transport: Transport, snapshot: str, report: Report, force: bool = False) -> str:
    """Every member from the same snapshot into a new cluster of the same members; returns its token.
    The backup timers are stopped first (no snapshot of a half-restored cluster) and started again last."""
    url = find_snapshot(transport, snapshot)
    require_healthy(transport, force)
    members = transport.members()
    token = f"restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    for member in members:
        call(transport, member, ["systemctl", "stop", "etcd-backup.timer"], QUICK_S)
    report(f"stopped the backup timers of {len(members)} members")
    for member in members:
        call(transport, member, ["systemctl", "stop", "etcd.service"], RESTART_S)
    report(f"stopped etcd on {len(members)} members")
    for member in members:
        run_script(transport, member, "etcd-restore", url, token, deadline_s=DATA_S)
        report(f"  {member}  restored from {url.rsplit('/', 1)[-1]}")
    for member in members:
        call(transport, member, ["systemctl", "start", "--no-block", "etcd.service"], QUICK_S)
    wait_healthy(transport, members)
    report(f"  {len(members)} members healthy")
    for member in members:
        call(transport, member, ["systemctl", "start", "etcd-backup.timer"], QUICK_S)
    report(f"started the backup timers of {len(members)} members")
    return token


# --- members ------------------------------------------------------------------------------------

def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def replace_member(transport: Transport, name: str, report: Report, force: bool = False) -> None:
    """A member whose data is lost or damaged: etcd stops, its data is moved aside, and its join script brings
    it back as a learner that is promoted once it has caught up. The others keep quorum throughout."""
    members = transport.members()
    if name not in members:
        raise BadInput(f"--member: {name!r} is not one of {', '.join(members)}")
    require_healthy(transport, force, [member for member in members if member != name])
    call(transport, name, ["systemctl", "stop", "etcd.service"], RESTART_S)
    report(f"{name}: etcd stopped")
    for step in ("reset", "prepare"):
        said = _last_line(run_script(transport, name, "etcd-join", step, deadline_s=QUICK_S).stderr)
        if said:
            report(f"  {said}")
    call(transport, name, ["systemctl", "start", "--no-block", "etcd.service"], QUICK_S)
    said = _last_line(run_script(transport, name, "etcd-join", "promote", deadline_s=RESTART_S * 3).stderr)
    if said:
        report(f"  {said}")
    wait_healthy(transport, [name])
    report(f"  {name}  healthy")


def _followers_first(transport: Transport) -> list[str]:
    rows = cluster_status(transport)
    return [row.name for row in rows if not row.is_leader] + [row.name for row in rows if row.is_leader]


def refresh_tls(transport: Transport, report: Report, force: bool = False) -> None:
    """Each member fetches its key, certificate and trusted CAs again (etcd-bootstrap refresh-tls, the script
    members ship) and restarts if they changed: one at a time, followers first, each healthy before the next."""
    require_healthy(transport, force)
    for member in _followers_first(transport):
        result = run_script(transport, member, "etcd-bootstrap", "refresh-tls", deadline_s=RESTART_S)
        wait_healthy(transport, [member])
        changed = "restarted" in result.stderr
        report(f"  {member}  {'new TLS files, restarted' if changed else 'TLS files unchanged'}, healthy")


DEFRAGMENTED = re.compile(r"etcd-defrag: (\S+) defragmented: (\d+) -> (\d+) bytes")


def defrag(transport: Transport, report: Report, force: bool = False) -> None:
    """The leader's etcd-defrag: each member in turn, followers first, the leader last, the cluster healthy
    and caught up between steps."""
    head, result = _on_the_leader(transport, "etcd-defrag", force)
    _report_defragmented(head, result, report)


def _report_defragmented(head: str, result: Result, report: Report) -> list[tuple[str, int]]:
    """Each member etcd-defrag reports done, with its database size afterwards."""
    done = DEFRAGMENTED.findall(result.stderr)
    if not done:
        raise OperationError(f"{head}: etcd-defrag defragmented nothing: {_last_line(result.stderr)}")
    for member, before, after in done:
        report(f"  {member}  {before} -> {after} bytes, healthy and caught up")
    return [(member, int(after)) for member, _, after in done]


# --- space: etcd's NOSPACE alarm --------------------------------------------------------------------

NOSPACE = "NOSPACE"
# How /health words a member whose only fault is the NOSPACE alarm (etcd 3.5 and later).
NOSPACE_HEALTH = "ALARM NOSPACE"
ALARM = re.compile(r"alarm:(\w+)")
# etcd's answer to a write while the quota is full (api/v3rpc/rpctypes/error.go, ErrGRPCNoSpace).
SPACE_EXCEEDED = "mvcc: database space exceeded"
# Written and deleted again to prove the cluster takes writes; a name no application uses.
PROBE_KEY = "etcd-stack/recover-space"


def alarms(transport: Transport, member: str) -> list[str]:
    """The cluster's raised alarms (NOSPACE, CORRUPT), one per member that raised it, as the member lists them."""
    return ALARM.findall(run_script(transport, member, "etcd-ctl", "alarm", "list", deadline_s=QUICK_S).stdout)


def _healthy_but_full(checked: MemberHealth) -> bool:
    return checked.healthy or checked.reason == NOSPACE_HEALTH


def recover_space(transport: Transport, report: Report, force: bool = False) -> None:
    """etcd's way out of NOSPACE (a member's database reached the quota; the cluster takes only reads and
    deletes): compact the history to the current revision, defragment every member with the script the timer
    runs (followers first, the leader last), disarm the alarm, then prove a write is taken again."""
    require_healthy(transport, force, tolerated=(NOSPACE_HEALTH,))
    # Forced past an unhealthy member, the check afterwards waits for the others only.
    serving = [member for member in transport.members() if _healthy_but_full(transport.health(member))]
    head = leader(transport)
    raised = alarms(transport, head)
    others = sorted(set(raised) - {NOSPACE})
    if others:
        raise OperationError(f"{head}: alarm {', '.join(others)} raised: not a question of space, nothing was "
                             "changed")
    report(f"alarms: {' '.join(raised) or 'none'}")
    revision = member_status(transport, head).revision
    if revision is None:
        raise OperationError(f"{head}: reports no revision to compact to")
    run_script(transport, head, "etcd-ctl", "compact", str(revision), "--physical", deadline_s=DATA_S)
    report(f"compacted the history to revision {revision}")
    sizes = _report_defragmented(head, run_script(transport, head, "etcd-defrag", deadline_s=DATA_S), report)
    run_script(transport, head, "etcd-ctl", "alarm", "disarm", deadline_s=QUICK_S)
    wait_healthy(transport, serving)
    left = alarms(transport, head)
    if left:
        raise OperationError(f"{head}: alarm {' '.join(left)} still raised after the disarm")
    try:
        run_script(transport, head, "etcd-ctl", "put", PROBE_KEY, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
                   deadline_s=QUICK_S)
    except OperationError as refused:
        if SPACE_EXCEEDED not in str(refused):
            raise
        largest = max(size for _, size in sizes)
        raise OperationError(f"writes still refused with databases of up to {largest} bytes after compaction and "
                             f"defragmentation: the live data alone fills the quota; delete keys or raise "
                             f"etcd:quotaBackendBytes ({refused})") from None
    run_script(transport, head, "etcd-ctl", "del", PROBE_KEY, deadline_s=QUICK_S)
    report("alarms: none; a write was taken again")


# --- a sandbox's stand-ins for what `pulumi up` changes on AWS -------------------------------------

def rotate_certs(sandbox: Sandbox, report: Report) -> None:
    """New keys and certificates from the same CA into the members' parameters (what `pulumi up` does on AWS),
    then refresh-tls: each member takes its own, one at a time."""
    ca = local.LocalCa.load(sandbox.directory)
    for member in sandbox.members:
        local.store_member(sandbox.directory, sandbox.cluster_name, member, ca)
    refresh_tls(SandboxTransport(sandbox), report)
    local.issue_operator(sandbox.directory, ca, sandbox.cluster_name)
    report("  operator  new client certificate")


def rotate_ca(sandbox: Sandbox, report: Report) -> None:
    """A move to a new CA in three passes, each the parameters changed and then refresh-tls on every member:
    trust both CAs, issue from the new one, drop the old one."""
    old = local.LocalCa.load(sandbox.directory)
    new = local.LocalCa.create(sandbox.cluster_name, old.generation + 1)
    transport = SandboxTransport(sandbox)
    local.trust(sandbox.directory, new.pem + old.pem)
    local.store_trust(sandbox.directory, sandbox.cluster_name, new.pem + old.pem)
    report(f"trust CA {new.generation} beside CA {old.generation}:")
    refresh_tls(transport, report)
    for member in sandbox.members:
        local.store_member(sandbox.directory, sandbox.cluster_name, member, new)
    report(f"issue from CA {new.generation}:")
    refresh_tls(transport, report)
    local.issue_operator(sandbox.directory, new, sandbox.cluster_name)
    new.save(sandbox.directory)
    local.store_trust(sandbox.directory, sandbox.cluster_name, new.pem)
    report(f"drop CA {old.generation}:")
    refresh_tls(transport, report)
    local.trust(sandbox.directory, new.pem)

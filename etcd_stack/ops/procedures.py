"""Day-2 operations on a sandbox, each through the scripts every member ships, as on AWS:
backup, restore, replacing a member that lost its data, rolling changes, certificate rotation."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from etcd_stack import upgrade
from etcd_stack.config import StackConfig
from etcd_stack.sandbox import local
from etcd_stack.sandbox.cluster import (
    Sandbox,
    SandboxError,
    etcd_version,
    link_tools,
    new_token,
    parse_version,
    real_binary,
)


def backup(sandbox: Sandbox) -> Path:
    """Runs every member's backup script, as the timers would: the leader's takes the snapshot."""
    before = {path: path.stat().st_mtime_ns for path in sandbox.backups.glob("*.db")}
    for member in sandbox.running():
        sandbox.run_script(member, "etcd-backup")
    made = [path for path in sandbox.backups.glob("*.db") if before.get(path) != path.stat().st_mtime_ns]
    if len(made) != 1:
        raise SandboxError(f"expected one snapshot from the leader, found {len(made)} in {sandbox.backups}")
    return made[0]


def restore(sandbox: Sandbox, snapshot: Path, report: Callable[[str], None]) -> str:
    """The restore runbook: stop every member, restore each from the same snapshot with a new token, start."""
    if not snapshot.is_file():
        raise SandboxError(f"--snapshot: {str(snapshot)!r} is not a file")
    token = new_token(sandbox.cluster_name)
    for member in sandbox.members:
        sandbox.stop(member)
    report(f"stopped {len(sandbox.members)} members")
    for member in sandbox.members:
        sandbox.run_script(member, "etcd-restore", f"file://{snapshot.resolve()}", token)
        report(f"  {member.name}  restored from {snapshot.name}")
    sandbox.token = token
    sandbox.save()
    for member in sandbox.members:
        sandbox.start(member)
    sandbox.wait_healthy(sandbox.members, report=report)
    return token


def replace_member(sandbox: Sandbox, name: str, report: Callable[[str], None]) -> None:
    """A member whose data is lost: its process and data go, then its join script brings it back as a
    learner, it starts against the running cluster and is promoted once it has caught up."""
    try:
        member = sandbox.member(name)
    except StopIteration:
        raise SandboxError(f"--member: {name!r} is not one of {', '.join(m.name for m in sandbox.members)}") from None
    sandbox.stop(member, signal.SIGKILL)
    shutil.rmtree(sandbox.paths(member).data_dir, ignore_errors=True)
    sandbox.render(member)  # its files as a new instance would get them
    report(f"{name}: stopped and its data removed")
    report("  " + sandbox.run_script(member, "etcd-join", "prepare").strip())
    sandbox.start(member)
    report("  " + sandbox.run_script(member, "etcd-join", "promote", env={"ETCD_JOIN_PROMOTE_TIMEOUT": "120"}).strip())
    sandbox.wait_healthy([member], report=report)


def roll(sandbox: Sandbox, report: Callable[[str], None], cfg: StackConfig | None = None,
         binary: Path | None = None) -> None:
    """One member at a time: render its new configuration (and binary), restart it, and go on only once
    it is healthy again."""
    if binary is not None:
        binary = real_binary(binary)
        target = etcd_version(binary)
        reason = upgrade.refusal(parse_version(sandbox.version), target)
        if reason:
            raise SandboxError(f"--etcd-bin: {reason}")
        sandbox.binary, sandbox.version = str(binary), str(target)
        link_tools(binary, sandbox.directory / "bin")
    if cfg is not None:
        sandbox.heartbeat_ms, sandbox.election_ms = cfg.heartbeat_ms, cfg.election_ms
    sandbox.save()
    for member in sandbox.members:
        sandbox.render(member)
        sandbox.restart(member)
        report(f"  {member.name}  restarted (etcd {sandbox.version}) and healthy")


def rotate_certs(sandbox: Sandbox, report: Callable[[str], None]) -> None:
    """New keys and certificates from the same CA, one member at a time, each back to health before the next."""
    ca = local.LocalCa.load(sandbox.directory)
    for member in sandbox.members:
        local.issue_member(sandbox.directory, member, ca)
        sandbox.restart(member)
        report(f"  {member.name}  new certificate, healthy")
    local.issue_operator(sandbox.directory, ca, sandbox.cluster_name)
    report("  operator  new client certificate")


def rotate_ca(sandbox: Sandbox, report: Callable[[str], None]) -> None:
    """A move to a new CA in three rolling passes: trust both CAs, issue from the new one, drop the old one."""
    old = local.LocalCa.load(sandbox.directory)
    new = local.LocalCa.create(sandbox.cluster_name, old.generation + 1)
    both = new.pem + old.pem
    local.trust(sandbox.directory, both)
    report(f"trust CA {new.generation} beside CA {old.generation}:")
    for member in sandbox.members:
        local.trust(sandbox.directory, both, member)
        sandbox.restart(member)
        report(f"  {member.name}  trusts both, healthy")
    report(f"issue from CA {new.generation}:")
    for member in sandbox.members:
        local.issue_member(sandbox.directory, member, new)
        sandbox.restart(member)
        report(f"  {member.name}  certificate from CA {new.generation}, healthy")
    local.issue_operator(sandbox.directory, new, sandbox.cluster_name)
    new.save(sandbox.directory)
    report(f"drop CA {old.generation}:")
    for member in sandbox.members:
        local.trust(sandbox.directory, new.pem, member)
        sandbox.restart(member)
        report(f"  {member.name}  trusts CA {new.generation} only, healthy")
    local.trust(sandbox.directory, new.pem)

"""Rolling changes on a sandbox with the gates `pulumi up` runs on AWS (ops/gate.py): the same checks before
and after each member, read through the sandbox's transport, around a member restarted with its new
configuration and binary on its own data. What differs from AWS is only how a member is replaced: a new
process here, a new instance there."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from etcd_stack import upgrade
from etcd_stack.addressing import MemberPlan
from etcd_stack.config import CLUSTER_SIZES, StackConfig
from etcd_stack.ops.gate import Gate, GatePolicy
from etcd_stack.ops.probes import TransportProbe
from etcd_stack.ops.procedures import QUICK_S
from etcd_stack.ops.transport import BadInput, run_script
from etcd_stack.sandbox import local
from etcd_stack.sandbox.cluster import Sandbox, SandboxError, etcd_version, link_tools, parse_version, real_binary
from etcd_stack.sandbox.transport import SandboxTransport

# The gates' checks at the sandbox's pace: members restart in a second or two, not in minutes.
SANDBOX_GATES = GatePolicy(consecutive=3, max_lag=50, deadline_s=120.0, settle_s=30.0, interval_s=0.5)


def roll(sandbox: Sandbox, report: Callable[[str], None], cfg: StackConfig | None = None,
         binary: Path | None = None, policy: GatePolicy = SANDBOX_GATES) -> None:
    """What `pulumi up` does to each member on AWS, with the same gates: the cluster is sound and leadership
    leaves the member, the member comes back with its new configuration (and binary) on its own data, and is
    healthy and caught up several checks in a row before the next member is touched."""
    if binary is not None:
        binary = real_binary(binary)
        target = etcd_version(binary)
        reason = upgrade.refusal(parse_version(sandbox.version), target)
        if reason:
            raise SandboxError(f"--etcd-bin: {reason}")
    transport = SandboxTransport(sandbox)
    gate = Gate(TransportProbe(lambda: transport), policy, report=lambda line: report(f"  {line}"))

    def switch() -> None:
        # Only once the first member's gate found the cluster sound: the scripts' etcdctl moves along.
        if binary is not None:
            sandbox.binary, sandbox.version = str(binary), str(target)
            link_tools(binary, sandbox.directory / "bin")
        if cfg is not None:
            sandbox.heartbeat_ms, sandbox.election_ms = cfg.heartbeat_ms, cfg.election_ms
        sandbox.save()

    _roll_members(sandbox, gate, transport, report, before_first=switch)


def resize(sandbox: Sandbox, size: int, report: Callable[[str], None], policy: GatePolicy = SANDBOX_GATES) -> None:
    """A new size in the order `pulumi up` gives it on AWS: members the new size leaves out are taken out of
    the membership first, the highest first; the survivors roll onto the new plan; new members join one at
    a time as learners (their own `etcd-join`, as on an instance's first boot) and are promoted."""
    if size not in CLUSTER_SIZES:
        raise BadInput(f"--size: {size} is not one of {', '.join(str(s) for s in CLUSTER_SIZES)}")
    transport = SandboxTransport(sandbox)
    gate = Gate(TransportProbe(lambda: transport), policy, report=lambda line: report(f"  {line}"))
    names = [member.name for member in sandbox.members]
    for member in reversed(sandbox.members[size:]):
        names.remove(member.name)
        gate.retire(member.name, names)
        sandbox.stop(member)
        shutil.rmtree(sandbox.home(member), ignore_errors=True)
        sandbox.members.remove(member)
        sandbox.save()
        report(f"  {member.name}  removed")
    survivors = list(sandbox.members)
    planned = local.local_members(size)
    sandbox.members = list(planned)
    sandbox.save()
    _roll_members(sandbox, gate, transport, report, survivors)
    for member in planned[len(survivors):]:
        gate.before(member.name, names)
        _issue(sandbox, member)
        sandbox.render(member)
        run_script(transport, member.name, "etcd-join", "prepare", deadline_s=QUICK_S)
        sandbox.start(member)
        run_script(transport, member.name, "etcd-join", "promote", deadline_s=policy.deadline_s)
        names.append(member.name)
        gate.after(member.name, names, instance=transport.instance(member.name))
        report(f"  {member.name}  joined and promoted")


def _roll_members(sandbox: Sandbox, gate: Gate, transport: SandboxTransport, report: Callable[[str], None],
                  members: list[MemberPlan] | None = None, before_first: Callable[[], None] = lambda: None) -> None:
    names = [member.name for member in sandbox.members if (members is None or member in members)]
    for position, member in enumerate(members if members is not None else list(sandbox.members)):
        gate.before(member.name, names)
        if position == 0:
            before_first()
        sandbox.stop(member)
        sandbox.render(member)
        sandbox.start(member)
        gate.after(member.name, names, instance=transport.instance(member.name))
        report(f"  {member.name}  rolled (etcd {sandbox.version})")


def _issue(sandbox: Sandbox, member: MemberPlan) -> None:
    """A new member's key and certificate from the cluster's CA, trusting what the others trust, and its
    parameters: what `pulumi up` makes for a new member before its instance boots."""
    ca = local.LocalCa.load(sandbox.directory)
    local.issue_member(sandbox.directory, member, ca)
    local.trust(sandbox.directory, Path(sandbox.paths(sandbox.members[0]).ca_file).read_text(), member)
    local.publish_pki(sandbox.directory, (member,), sandbox.cluster_name)

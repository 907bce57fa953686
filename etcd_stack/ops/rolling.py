"""Rolling changes on a sandbox with the gates `pulumi up` runs on AWS (ops/gate.py): the same checks before
and after each member, read through the sandbox's transport, around a member restarted with its new
configuration and binary on its own data. What differs from AWS is only how a member is replaced: a new
process here, a new instance there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from etcd_stack import upgrade
from etcd_stack.config import StackConfig
from etcd_stack.ops.gate import Gate, GatePolicy
from etcd_stack.ops.probes import TransportProbe
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
    names = [member.name for member in sandbox.members]
    # Before anything changes: a roll that would start on an unsound cluster is refused here.
    gate.before(names[0], names)
    if binary is not None:
        sandbox.binary, sandbox.version = str(binary), str(target)
        link_tools(binary, sandbox.directory / "bin")
    if cfg is not None:
        sandbox.heartbeat_ms, sandbox.election_ms = cfg.heartbeat_ms, cfg.election_ms
    sandbox.save()
    for member in sandbox.members:
        gate.before(member.name, names)
        sandbox.stop(member)
        sandbox.render(member)
        sandbox.start(member)
        gate.after(member.name, names, instance=transport.instance(member.name))
        report(f"  {member.name}  rolled (etcd {sandbox.version})")

"""What `pulumi up` checks around the members: a record of the cluster, and a gate before and after each member.

The record (in the stack's state) tells a running cluster from a new one, so the first deployment runs no
checks and is not serialised; it refuses at preview what cannot be done to a running cluster (a smaller
volume). A new size is the gates' work: members join or retire one at a time. The gates' checks
themselves (etcd_stack/ops/gate.py) come in as a provider: the components only place them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from etcd_stack.config import EtcdVersion

RECORDED = ("version", "size", "dataVolumeSize")


class ClusterRecordProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if olds.get("dataVolumeSize") is not None and int(news["dataVolumeSize"]) < int(olds["dataVolumeSize"]):
            failures.append(CheckFailure("dataVolumeSize", (
                f"etcd:dataVolumeSize: {news['dataVolumeSize']} is smaller than the {olds['dataVolumeSize']} GiB the "
                "members' volumes have; EBS volumes only grow")))
        # Old inputs exist only once the record has been deployed: from then on the cluster is running.
        return CheckResult({**news, "bootstrapped": bool(olds)}, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="cluster", outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(olds.get(key) != news.get(key) for key in (*RECORDED, "bootstrapped"))
        return DiffResult(changes=changed, replaces=[])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


class ClusterRecord(pulumi.dynamic.Resource):
    bootstrapped: pulumi.Output[bool]

    def __init__(self, name: str, version: EtcdVersion, size: int, data_volume_size: int,
                 opts: pulumi.ResourceOptions | None = None):
        props = {"version": str(version), "size": size, "dataVolumeSize": data_volume_size, "bootstrapped": False}
        super().__init__(ClusterRecordProvider(), name, props, opts)


@dataclass(frozen=True)
class GateArgs:
    phase: str
    member: str
    # The members that must be sound around this step.
    members: Sequence[str]
    # A digest of what the member runs: a new one means the member is about to change, or has.
    revision: pulumi.Input[str]
    version: str
    bootstrapped: pulumi.Input[bool]
    # Where the probes look: the stack's members are found by their tags in this region.
    region: str
    stack: str
    cluster: str
    instance: pulumi.Input[str] | None = None


class MemberGate(pulumi.dynamic.Resource):
    ran: pulumi.Output[str]

    def __init__(self, name: str, provider: ResourceProvider, args: GateArgs,
                 opts: pulumi.ResourceOptions | None = None):
        props = {
            "phase": args.phase, "member": args.member, "members": list(args.members), "revision": args.revision,
            "version": args.version, "bootstrapped": args.bootstrapped, "region": args.region, "stack": args.stack,
            "cluster": args.cluster, "instance": args.instance, "ran": None,
        }
        super().__init__(provider, name, props, opts)

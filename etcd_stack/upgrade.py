"""etcd's supported upgrade path, and a record of what the stack deployed that enforces it.

etcd upgrades one minor version at a time, and 3.6 needs 3.5.20 or later underneath it. A new
`etcd:version` is checked against the version the stack last deployed, which the DeployedVersion
resource keeps in the stack's state: `pulumi preview` refuses a skip before anything changes.
It refuses a new `etcd:clusterSize` too: members would join a running cluster as if it were new.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from etcd_stack.config import EtcdVersion

# The oldest patch of the previous line that a line can be reached from.
MINIMUM_BEFORE = {(3, 6): EtcdVersion(3, 5, 20)}


def parse(text: str) -> EtcdVersion:
    major, minor, patch = (int(part) for part in text.split("."))
    return EtcdVersion(major, minor, patch)


def refusal(current: EtcdVersion, target: EtcdVersion) -> str | None:
    """Why etcd cannot go from `current` to `target` in one step, or None when it can."""
    if target.line == current.line:
        return None
    if target.line < current.line:
        return (f"{current} to {target} is a downgrade; etcd leaves a minor version only through its own "
                "downgrade procedure (etcdctl downgrade), one minor version at a time")
    if target.major != current.major or target.minor != current.minor + 1:
        step = f"{current.major}.{current.minor + 1}"
        return f"{current} to {target} skips a minor version; upgrade to {step} first, one minor version at a time"
    minimum = MINIMUM_BEFORE.get(target.line)
    if minimum and current < minimum:
        return f"{current} to {target}: etcd {target.line[0]}.{target.line[1]} needs {minimum} or later first"
    return None


class DeployedVersionProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if olds.get("version"):
            reason = refusal(parse(olds["version"]), parse(news["version"]))
            if reason:
                failures.append(CheckFailure("version", f"etcd:version: {reason}"))
        if olds.get("size") is not None and int(olds["size"]) != int(news["size"]):
            failures.append(CheckFailure("size", (
                f"etcd:clusterSize: {olds['size']} to {news['size']} on a running cluster is not supported: "
                "new members would bootstrap as a new cluster; keep the size, or build a new stack and restore "
                "a snapshot into it (docs/OPERATIONS.md)")))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"etcd-{props['version']}", outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=any(olds.get(key) != news.get(key) for key in ("version", "size")), replaces=[])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


class DeployedVersion(pulumi.dynamic.Resource):
    def __init__(self, name: str, version: EtcdVersion, size: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__(DeployedVersionProvider(), name, {"version": str(version), "size": size}, opts)

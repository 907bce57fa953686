"""A record of what the stack deployed, kept in the stack's state, that enforces etcd's upgrade path.

A new `etcd:version` is checked against the version the stack last deployed: `pulumi preview` refuses
a skip before anything changes. It refuses a new `etcd:clusterSize` too: members would join a running
cluster as if it were new.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from etcd_stack.config import EtcdVersion
from etcd_stack.upgrade import parse, refusal


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

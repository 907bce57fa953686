"""Deploy critical path on AWS, modelled: the program's dependency graph (the `dependencies` of each
inventory.json row) weighted with typical creation times per resource type (bench/creation_times.json,
each figure with its source)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import Figure
from etcd_stack import config
from etcd_stack.preview import offline

TIMES_FILE = Path(__file__).with_name("creation_times.json")
# Made in the Pulumi engine or on this machine, not by AWS: no wait worth counting.
LOCAL_PREFIXES = ("etcd-aws:", "tls:", "pulumi-python:dynamic:")
ASSUMED_SECONDS = 2.0
COMPONENT_PREFIX = LOCAL_PREFIXES[0]  # an AWS API call with no documented wait


@dataclass(frozen=True)
class Chain:
    seconds: float
    nodes: tuple[tuple[str, str], ...]


def creation_times() -> dict[str, dict]:
    return {entry["type"]: entry for entry in json.loads(TIMES_FILE.read_text())}


def weight(typ: str, table: dict[str, dict]) -> tuple[float, str]:
    if typ.startswith(LOCAL_PREFIXES):
        return 0.0, "local"
    entry = table.get(typ)
    if entry and entry.get("typical_seconds") is not None:
        return float(entry["typical_seconds"]), entry["basis"]
    return ASSUMED_SECONDS, "assumed"


def longest_path(rows: Sequence[Mapping[str, Any]], table: dict[str, dict]
                 ) -> tuple[Chain, dict[tuple[str, str], set]]:
    """The slowest chain through inventory rows, each waiting for its `dependencies` and for its parent
    component (the SDK registers a child only once its parent's registration is done)."""
    nodes = {(row["type"], row["name"]): row for row in rows}
    components = {row["name"]: key for key, row in nodes.items() if key[0].startswith(COMPONENT_PREFIX)}
    waits_for = {key: ({(dep["type"], dep["name"]) for dep in row["dependencies"]} & nodes.keys())
                 | ({components[row["parent"]]} if row["parent"] in components else set())
                 for key, row in nodes.items()}
    finish: dict[tuple[str, str], Chain] = {}

    def done(key: tuple[str, str]) -> Chain:
        if key not in finish:
            before = max((done(dep) for dep in waits_for[key]), key=lambda p: p.seconds, default=Chain(0.0, ()))
            finish[key] = Chain(before.seconds + weight(key[0], table)[0], (*before.nodes, key))
        return finish[key]

    return max((done(key) for key in nodes), key=lambda p: p.seconds), waits_for


def ancestors(key: tuple[str, str], waits_for: dict[tuple[str, str], set]) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    stack = list(waits_for[key])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(waits_for[node])
    return seen


def run() -> tuple[list[Figure], list[str]]:
    raw = config.from_stack_file(yaml.safe_load((offline.PROJECT_DIR / "Pulumi.dev.yaml").read_text()))
    stack = offline.run(raw, "dev")
    table = creation_times()
    path, waits_for = longest_path([resource.public() for resource in stack.resources], table)
    slowest_type = max(sorted({r.type for r in stack.resources}), key=lambda t: weight(t, table)[0])
    slowest = weight(slowest_type, table)[0]
    lines = [f"{name} ({typ.split(':')[-1]}, {weight(typ, table)[0]:.0f} s)" for typ, name in path.nodes
             if weight(typ, table)[0] > 0]
    instances = [(r.type, r.name) for r in stack.resources if r.type == "aws:ec2/instance:Instance"]
    blocking = {"aws:ec2/natGateway:NatGateway", "aws:lb/loadBalancer:LoadBalancer"}
    waiting = sorted({f"{i[1]} waits for {a[1]}" for i in instances for a in ancestors(i, waits_for)
                      if a[0] in blocking})
    checks = [f"instances waiting for the load balancer or a NAT gateway: {', '.join(waiting) or 'none'}"]
    figure = Figure("deploy", "critical path of `pulumi up` (dev stack, modelled)", path.seconds, slowest, "s",
                    f"slowest single resource ({slowest_type.split(':')[-1]})",
                    f"{len(stack.resources)} resources")
    return [figure], ["critical path: " + " -> ".join(lines), *checks]

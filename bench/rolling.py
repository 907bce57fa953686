"""Rolling changes: the longest write pause while every member of a sandbox is replaced through the gates
(leadership moved first), against the election timeout; and the modelled duration of the same roll of the dev
stack on AWS, against the same replacements without gates."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import Figure, running_sandbox, stack_config
from etcd_stack.ops import rolling
from etcd_stack.ops.gate import GatePolicy
from etcd_stack.sandbox.workload import Writer

STEPS_FILE = Path(__file__).with_name("rolling_steps.json")
RUNS = 2
# What one instance replacement takes on AWS, in the order `pulumi up` runs it.
REPLACEMENT = ("stop", "detach", "terminate", "launch", "attach", "boot", "ssm-registration")
# A probe is the membership, then each member's health and status at once: three round trips.
ROUND_TRIPS_PER_PROBE = 3


def steps() -> dict[str, float]:
    return {entry["step"]: float(entry["typical_seconds"]) for entry in json.loads(STEPS_FILE.read_text())}


def gate_seconds(policy: GatePolicy, times: dict[str, float]) -> float:
    """A gate that finds what it wants at once: its checks in a row, the intervals between them."""
    probe = ROUND_TRIPS_PER_PROBE * times["ssm-round-trip"]
    return policy.consecutive * probe + (policy.consecutive - 1) * policy.interval_s


def modelled_roll(members: int, policy: GatePolicy, times: dict[str, float]) -> tuple[float, float]:
    """The roll of every member on AWS with its two gates, and the same replacements with none."""
    replacement = sum(times[step] for step in REPLACEMENT)
    return members * (replacement + 2 * gate_seconds(policy, times)), members * replacement


def measured_pause() -> list[float]:
    cfg = stack_config(3)
    pauses = []
    with running_sandbox(cfg) as box:
        for _ in range(RUNS):
            with Writer(box, request_timeout=0.3) as writer:
                writer.wait_for_writes_after(time.monotonic(), count=20)
                started = time.monotonic()
                rolling.roll(box, report=lambda _: None, cfg=cfg)
                writer.wait_for_writes_after(time.monotonic(), count=20)
            pauses.append(writer.longest_pause(since=started))
    return pauses


def run() -> list[Figure]:
    election_s = stack_config(3).election_ms / 1000
    pauses = measured_pause()
    policy = GatePolicy()
    gated, bare = modelled_roll(3, policy, steps())
    return [
        Figure("rolling", "longest write pause, roll of 3 members through the gates", max(pauses), election_s, "s",
               "election timeout", f"{RUNS} rolls of every member on loopback, leadership moved before its "
                                   "member; the writer gives each put 0.3 s"),
        Figure("rolling", "modelled roll of the dev stack on AWS (3 members, gates)", gated, bare, "s",
               "the same replacements without gates",
               f"per member: {', '.join(REPLACEMENT)} from bench/rolling_steps.json (sourced), and two gates of "
               f"{policy.consecutive} probes of {ROUND_TRIPS_PER_PROBE} SSM round trips each"),
    ]

"""Failover: how long writes stop after the leader is killed, against the configured election timeout."""

from __future__ import annotations

import signal
import statistics
import time

from bench.common import Figure, running_sandbox, stack_config
from etcd_stack.sandbox.workload import Writer

RUNS = 5


def run() -> list[Figure]:
    cfg = stack_config(3)
    election_s = cfg.election_ms / 1000
    windows = []
    with running_sandbox(cfg) as box:
        for _ in range(RUNS):
            # A short request timeout: a put stuck on the dead leader moves on quickly, so the window
            # measures etcd's election rather than the client's patience.
            with Writer(box, request_timeout=0.3) as writer:
                writer.wait_for_writes_after(time.monotonic(), count=20)
                victim = box.member(box.leader())
                killed_at = time.monotonic()
                box.stop(victim, signal.SIGKILL)
                writer.wait_for_writes_after(killed_at, count=20, timeout_s=30)
            # The writes stopped from the last one acknowledged before the kill to the first after the
            # election: the longest pause between two acknowledgements that ends after the kill.
            windows.append(writer.longest_pause(since=killed_at))
            box.start(victim)
            box.wait_healthy([victim])
    note = f"{RUNS} runs; the writer retries through every member, giving each put 0.3 s"
    return [
        Figure("failover", "writes unavailable after leader SIGKILL, min", min(windows), election_s, "s",
               "election timeout", note),
        Figure("failover", "writes unavailable after leader SIGKILL, median", statistics.median(windows),
               election_s, "s", "election timeout", note),
        Figure("failover", "writes unavailable after leader SIGKILL, max", max(windows), election_s, "s",
               "election timeout", note),
    ]

"""Throughput and latency with etcd's own load generator (`benchmark put`, built from etcd's Go modules of
the same version as the members): the sandbox's TLS cluster against the same etcd without TLS.

Both are measured at a concurrency shown to saturate them. On each cluster the clients rise fourfold from 8
until four times as many raise throughput by less than SATURATION; at MAX_CLIENTS, a pair still rising runs
again for longer (LONGER_RUNS), since on a shared machine short runs at many clients are the noisiest. No
run starts once BUDGET_S has passed. A cluster that never settles leaves the section incomplete: its figures
are still what was measured, at the largest concurrency both clusters ran.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BareCluster, Figure, Outcome, running_sandbox, stack_config
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox

FIRST_CLIENTS = 8
STEP = 4
MAX_CLIENTS = 8192
CONNECTIONS = 8
PUTS = 20000
# Every client gets this many puts at least: at thousands of clients, 20000 puts would measure mostly set-up.
PUTS_PER_CLIENT = 20
SATURATION = 1.10  # four times the clients adding less than 10% throughput
# A pair still rising at MAX_CLIENTS runs again with this many times the puts, one round after the other.
LONGER_RUNS = (2, 4)
BUDGET_S = 480.0  # no run of the search starts after this, counted from the section's first run
VALUE_BYTES = 256
RESULT = re.compile(r"Requests/sec:\s+([\d.]+).*?50% in ([\d.]+) secs.*?99% in ([\d.]+) secs", re.S)

Run = dict[str, float]
# One run of the load generator on a cluster: clients and total puts in, puts/s and latencies out.
Measure = Callable[[int, int], Run]
Cluster = Callable[[], contextlib.AbstractContextManager[Measure]]
Clock = Callable[[], float]


def put(tool: Path, endpoints: list[str], clients: int, puts: int, tls: list[str]) -> Run:
    """One `benchmark put` run: puts/s, p50 and p99 in milliseconds."""
    result = subprocess.run([
        str(tool), "put", "--endpoints", ",".join(endpoints), "--clients", str(clients),
        "--conns", str(min(clients, CONNECTIONS)), "--total", str(puts), "--val-size", str(VALUE_BYTES),
        "--key-space-size", str(puts), "--sequential-keys", *tls,
    ], capture_output=True, text=True, timeout=600, check=False)
    match = RESULT.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"benchmark put failed: {(result.stderr or result.stdout).strip()[-300:]}")
    rate, p50, p99 = (float(value) for value in match.groups())
    return {"throughput": rate, "p50": p50 * 1000, "p99": p99 * 1000, "clients": clients, "puts": puts}


@dataclass
class Search:
    """The saturation search on one cluster: the latest run at each concurrency tried."""

    runs: dict[int, Run] = field(default_factory=dict)
    longer: int = 0  # how many rounds of LONGER_RUNS the pair at MAX_CLIENTS has begun
    queue: list[int] = field(default_factory=list)  # what is left of the current longer round
    out_of_time: bool = False  # the search stopped because the budget ran out

    def saturation(self) -> tuple[int, int] | None:
        """The first pair of concurrencies where the larger no longer raised throughput by SATURATION."""
        for fewer, more in itertools.pairwise(sorted(self.runs)):
            if self.runs[more]["throughput"] < self.runs[fewer]["throughput"] * SATURATION:
                return fewer, more
        return None

    def compare_at(self) -> int:
        """Where this cluster is past saturation: the larger of its saturated pair, else the most it ran."""
        found = self.saturation()
        return found[1] if found else max(self.runs)

    def unsaturated(self, label: str, budget_s: float) -> str:
        """Why the search did not settle, as the report gives it: "... at 8192 clients: 1.12x over 2048, ..."."""
        counts = sorted(self.runs)
        said = f"{label} cluster not saturated at {counts[-1]} clients"
        if len(counts) > 1:
            fewer, more = counts[-2:]
            said += f": {self.runs[more]['throughput'] / self.runs[fewer]['throughput']:.2f}x over {fewer}"
        if self.longer:
            said += f", also in runs {' and '.join(map(str, LONGER_RUNS[:self.longer]))} times as long"
        return said + (f"; the search's {budget_s:.0f} s budget ran out" if self.out_of_time else "")


def puts_for(clients: int, longer: int = 1) -> int:
    """Puts for one run: PUTS, and at least PUTS_PER_CLIENT per client; `longer` times that in a longer round."""
    return max(PUTS, clients * PUTS_PER_CLIENT) * longer


def search(measure: Measure, deadline: float, clock: Clock, found: Search | None = None,
           floor: int = 0) -> Search:
    """Runs `measure` until the cluster is saturated and has run at `floor` clients (to compare with another
    cluster there), or until no step is left: MAX_CLIENTS reached and every longer round run, or `deadline`
    passed before a step."""
    found = found or Search()
    while True:
        counts = sorted(found.runs)
        if not found.queue and found.saturation() and counts[-1] >= floor:
            return found
        if clock() >= deadline:
            found.out_of_time = True
            return found
        if found.queue:
            clients = found.queue.pop(0)
            found.runs[clients] = measure(clients, puts_for(clients, LONGER_RUNS[found.longer - 1]))
        elif not counts:
            found.runs[FIRST_CLIENTS] = measure(FIRST_CLIENTS, puts_for(FIRST_CLIENTS))
        elif counts[-1] < MAX_CLIENTS:
            more = counts[-1] * STEP
            found.runs[more] = measure(more, puts_for(more))
        elif found.longer < len(LONGER_RUNS):
            # Both of the last pair run again at the same length, so they are compared like with like.
            found.longer += 1
            found.queue = counts[-2:]
        else:
            return found


def measure_both(tls_cluster: Cluster, plain_cluster: Cluster, clock: Clock = time.monotonic,
                 budget_s: float = BUDGET_S) -> tuple[Search, Search, float]:
    """Both clusters searched within one budget: TLS first, in the first half of it, then the plain cluster at
    least as far as TLS needed; TLS runs again if the plain cluster settled only at more clients. Returns the
    seconds taken."""
    started = clock()
    deadline = started + budget_s
    with tls_cluster() as measure:
        tls = search(measure, started + budget_s / 2, clock)
    with plain_cluster() as measure:
        plain = search(measure, deadline, clock, floor=tls.compare_at())
    if plain.compare_at() > max(tls.runs) and clock() < deadline:
        with tls_cluster() as measure:
            search(measure, deadline, clock, found=tls, floor=plain.compare_at())
    return tls, plain, clock() - started


def figures(tls: Search, plain: Search, seconds: float, generator: str, budget_s: float = BUDGET_S) -> Outcome:
    """The five throughput figures at the largest concurrency both clusters ran, up to where both are past
    saturation; the outcome is incomplete when a cluster never settled or the other never got that far."""
    wanted = max(tls.compare_at(), plain.compare_at())
    common = sorted(n for n in tls.runs.keys() & plain.runs.keys() if n <= wanted)
    if len(common) < 2:
        raise RuntimeError(f"the {budget_s:.0f} s budget ran out before two concurrencies ran on both clusters "
                           f"(TLS: {sorted(tls.runs)}, plain: {sorted(plain.runs)} clients)")
    fewer, clients = common[-2:]
    missing = [found.unsaturated(label, budget_s) for label, found in (("TLS", tls), ("plain", plain))
               if not found.saturation()]
    if not missing and clients < wanted:
        missing.append(f"compared at {clients} clients, short of {wanted} where both are saturated: the "
                       f"search's {budget_s:.0f} s budget ran out")
    incomplete = "; ".join(missing)
    sweep = "; ".join(f"{n}: " + ", ".join(f"{label} {found.runs[n]['throughput']:.0f}"
                                           for label, found in (("TLS", tls), ("plain", plain)) if n in found.runs)
                      for n in sorted(tls.runs.keys() | plain.runs.keys()))
    where = (f"where four times fewer gave within {SATURATION - 1:.0%} of the throughput on both clusters"
             if not incomplete else "the most both clusters ran, not shown to saturate them (see the top)")
    note = (f"{generator} ({PUTS} puts of {VALUE_BYTES} bytes, at least {PUTS_PER_CLIENT} per client, over up to "
            f"{CONNECTIONS} connections) at {clients} clients, {where}; puts/s by clients: {sweep}; the search "
            f"rises fourfold to {MAX_CLIENTS} clients, runs a pair still rising there again "
            f"{' then '.join(map(str, LONGER_RUNS))} times as long, and starts no run after {budget_s:.0f} s (on "
            f"the TLS cluster's first search, after half of that) "
            f"(it took {seconds:.0f} s); {os.cpu_count()} cores shared by the members and the generator")
    settled = ("" if incomplete else
               f"under {SATURATION:.2f}: more clients no longer raise throughput, the cluster is saturated")
    at, plain_at = tls.runs[clients], plain.runs[clients]
    return Outcome([
        Figure("throughput", "puts per second, TLS cluster", at["throughput"], plain_at["throughput"], "puts/s",
               "same etcd without TLS", note),
        Figure("throughput", "put latency p50, TLS cluster", at["p50"], plain_at["p50"], "ms", "same etcd without TLS"),
        Figure("throughput", "put latency p99, TLS cluster", at["p99"], plain_at["p99"], "ms", "same etcd without TLS"),
        Figure("throughput", f"puts per second, TLS, {clients} vs {fewer} clients", at["throughput"],
               tls.runs[fewer]["throughput"], "puts/s", f"{fewer} clients", settled),
        Figure("throughput", f"puts per second, plain, {clients} vs {fewer} clients", plain_at["throughput"],
               plain.runs[fewer]["throughput"], "puts/s", f"{fewer} clients"),
    ], incomplete=incomplete)


@contextlib.contextmanager
def _tls_cluster(tool: Path) -> Iterator[Measure]:
    with running_sandbox(stack_config(3)) as box:
        tls = ["--cacert", str(box.client.ca), "--cert", str(box.client.cert), "--key", str(box.client.key)]
        endpoints = [f"https://{m.ip}:2379" for m in box.members]
        yield lambda clients, puts: put(tool, endpoints, clients, puts, tls)


@contextlib.contextmanager
def _plain_cluster(tool: Path, binary: Path) -> Iterator[Measure]:
    with tempfile.TemporaryDirectory() as scratch:
        cluster = BareCluster(str(binary), Path(scratch), 3)
        try:
            cluster.start()
            cluster.wait_healthy()
            endpoints = [f"http://{m.ip}:2379" for m in cluster.members]
            yield lambda clients, puts: put(tool, endpoints, clients, puts, [])
        finally:
            cluster.stop()


def run() -> Outcome:
    binary = sandbox.find_etcd()
    version = str(sandbox.etcd_version(binary))
    tool = binaries.ensure_benchmark(version, report=lambda line: print(line, file=sys.stderr, flush=True))
    tls, plain, seconds = measure_both(lambda: _tls_cluster(tool), lambda: _plain_cluster(tool, binary))
    return figures(tls, plain, seconds, f"etcd {version}'s own `benchmark put`")

"""Throughput and latency with etcd's own load generator (`benchmark put`, built from etcd's Go modules of
the same version as the members): the sandbox's TLS cluster against the same etcd without TLS.

Both are measured at a concurrency shown to saturate them: clients double until throughput rises by less
than SATURATION; the figures compare the two at the larger concurrency of that last pair.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import BareCluster, Figure, running_sandbox, stack_config
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox

CLIENTS = (8, 32, 128, 512, 2048)
CONNECTIONS = 8
PUTS = 20000
SATURATION = 1.10  # four times the clients adding less than 10% throughput
VALUE_BYTES = 256
RESULT = re.compile(r"Requests/sec:\s+([\d.]+).*?50% in ([\d.]+) secs.*?99% in ([\d.]+) secs", re.S)


def put(tool: Path, endpoints: list[str], clients: int, tls: list[str]) -> dict[str, float]:
    """One `benchmark put` run: puts/s, p50 and p99 in milliseconds."""
    result = subprocess.run([
        str(tool), "put", "--endpoints", ",".join(endpoints), "--clients", str(clients),
        "--conns", str(min(clients, CONNECTIONS)), "--total", str(PUTS), "--val-size", str(VALUE_BYTES),
        "--key-space-size", str(PUTS), "--sequential-keys", *tls,
    ], capture_output=True, text=True, timeout=600, check=False)
    match = RESULT.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"benchmark put failed: {(result.stderr or result.stdout).strip()[-300:]}")
    rate, p50, p99 = (float(value) for value in match.groups())
    return {"throughput": rate, "p50": p50 * 1000, "p99": p99 * 1000, "clients": clients}


def sweep(tool: Path, endpoints: list[str], tls: list[str]) -> dict[int, dict[str, float]]:
    return {clients: put(tool, endpoints, clients, tls) for clients in CLIENTS}


def saturated_at(runs: dict[int, dict[str, float]]) -> int:
    """The fewest clients beyond which four times as many no longer raise throughput."""
    for fewer, more in itertools.pairwise(CLIENTS):
        if runs[more]["throughput"] < runs[fewer]["throughput"] * SATURATION:
            return fewer
    raise RuntimeError(f"throughput still rising at {CLIENTS[-1]} clients: {runs}")


def _tls_cluster(tool: Path) -> dict[int, dict[str, float]]:
    with running_sandbox(stack_config(3)) as box:
        tls = ["--cacert", str(box.client.ca), "--cert", str(box.client.cert), "--key", str(box.client.key)]
        return sweep(tool, [f"https://{m.ip}:2379" for m in box.members], tls)


def _plain_cluster(tool: Path, binary: Path) -> dict[int, dict[str, float]]:
    with tempfile.TemporaryDirectory() as scratch:
        cluster = BareCluster(str(binary), Path(scratch), 3)
        try:
            cluster.start()
            cluster.wait_healthy()
            return sweep(tool, [f"http://{m.ip}:2379" for m in cluster.members], [])
        finally:
            cluster.stop()


def run() -> list[Figure]:
    binary = sandbox.find_etcd()
    version = str(sandbox.etcd_version(binary))
    tool = binaries.ensure_benchmark(version, report=lambda line: print(line, file=sys.stderr, flush=True))
    tls_runs = _tls_cluster(tool)
    plain_runs = _plain_cluster(tool, binary)
    # Both compared at the same concurrency, past the point where each stopped gaining throughput.
    clients = CLIENTS[CLIENTS.index(max(saturated_at(tls_runs), saturated_at(plain_runs))) + 1]
    tls, plain = tls_runs[clients], plain_runs[clients]
    fewer = CLIENTS[CLIENTS.index(clients) - 1]
    sweep_note = "; ".join(f"{n}: TLS {tls_runs[n]['throughput']:.0f}, plain {plain_runs[n]['throughput']:.0f}"
                           for n in CLIENTS)
    note = (f"etcd {version}'s own `benchmark put` ({PUTS} puts of {VALUE_BYTES} bytes over up to {CONNECTIONS} "
            f"connections) at {clients} clients, where four times fewer gave within {SATURATION - 1:.0%} of the "
            f"throughput on both clusters; puts/s by clients: {sweep_note}; {os.cpu_count()} cores shared by "
            "the members and the generator")
    return [
        Figure("throughput", "puts per second, TLS cluster", tls["throughput"], plain["throughput"], "puts/s",
               "same etcd without TLS", note),
        Figure("throughput", "put latency p50, TLS cluster", tls["p50"], plain["p50"], "ms", "same etcd without TLS"),
        Figure("throughput", "put latency p99, TLS cluster", tls["p99"], plain["p99"], "ms", "same etcd without TLS"),
        Figure("throughput", f"puts per second, TLS, {clients} vs {fewer} clients", tls["throughput"],
               tls_runs[fewer]["throughput"], "puts/s", f"{fewer} clients",
               f"under {SATURATION:.2f}: more clients no longer raise throughput, the cluster is saturated"),
        Figure("throughput", f"puts per second, plain, {clients} vs {fewer} clients", plain["throughput"],
               plain_runs[fewer]["throughput"], "puts/s", f"{fewer} clients"),
    ]

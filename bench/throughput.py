"""Throughput and latency: sustained puts on the sandbox's TLS cluster against the same etcd without TLS.

The load generator is a set of processes, each with one keep-alive connection, putting through etcd's
JSON gateway. It shows it is not the bottleneck two ways: doubling its processes must not raise
throughput much (the cluster is saturated), and its processes spend most of their time waiting.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.common import BareCluster, Figure, stack_config
from etcd_stack.config import Bootstrap
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.gateway import Gateway

SECONDS = 5.0
PROCESSES = (4, 8)


def _load(tls: tuple[str, str, str] | None, ips: list[str], worker: int, seconds: float) -> tuple[list[float], float]:
    """One generator process: puts for `seconds`; returns each put's latency and the CPU time it used."""
    gateway = Gateway(*(tls or (None, None, None)), timeout=5)
    ip = ips[worker % len(ips)]
    latencies = []
    cpu_before = time.process_time()
    deadline = time.monotonic() + seconds
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        started = time.perf_counter()
        gateway.put(ip, f"bench/{worker}/{sequence}", "x" * 64)
        latencies.append(time.perf_counter() - started)
    gateway.close()
    return latencies, time.process_time() - cpu_before


def _measure(tls: tuple[str, str, str] | None, ips: list[str], processes: int) -> dict[str, float]:
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(_load, [tls] * processes, [ips] * processes, range(processes),
                                [SECONDS] * processes))
    latencies = sorted(lat for worker, _ in results for lat in worker)
    cpu = sum(used for _, used in results)
    return {
        "throughput": len(latencies) / SECONDS,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "generator_busy": cpu / (processes * SECONDS),
    }


def _tls_cluster(processes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "sandbox"
        box = sandbox.up(directory, "bench", stack_config(3), Bootstrap.STATIC, report=lambda _: None)
        try:
            tls = (str(box.client.ca), str(box.client.cert), str(box.client.key))
            return _measure(tls, [m.ip for m in box.members], processes)
        finally:
            sandbox.down(directory)


def _plain_cluster(processes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        cluster = BareCluster(str(sandbox.find_etcd()), Path(scratch), 3)
        try:
            cluster.start()
            cluster.wait_healthy()
            return _measure(None, [m.ip for m in cluster.members], processes)
        finally:
            cluster.stop()


def run() -> list[Figure]:
    small, large = PROCESSES
    tls = {n: _tls_cluster(n) for n in PROCESSES}
    plain = {n: _plain_cluster(n) for n in PROCESSES}
    busy = max(result["generator_busy"] for result in (*tls.values(), *plain.values()))
    note = (f"{large} generator processes for {SECONDS:.0f} s; with {small}: TLS {tls[small]['throughput']:.0f}/s, "
            f"plain {plain[small]['throughput']:.0f}/s; generator CPU busy at most {busy:.0%} of its time; "
            f"{os.cpu_count()} cores shared with the three members")
    return [
        Figure("throughput", "puts per second, TLS cluster", tls[large]["throughput"], plain[large]["throughput"],
               "puts/s", "same etcd without TLS", note),
        Figure("throughput", "put latency p50, TLS cluster", tls[large]["p50"], plain[large]["p50"], "ms",
               "same etcd without TLS"),
        Figure("throughput", "put latency p99, TLS cluster", tls[large]["p99"], plain[large]["p99"], "ms",
               "same etcd without TLS"),
        Figure("throughput", f"puts per second, {large} vs {small} generator processes (TLS)",
               tls[large]["throughput"], tls[small]["throughput"], "puts/s", f"{small} generator processes",
               "1 or less: more generators do not raise throughput, so the cluster (sharing the cores) sets the pace"),
    ]

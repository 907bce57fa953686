"""Bootstrap: `sandbox up` until every member is healthy, against the same etcd started bare."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import BareCluster, Figure, median_of, stack_config, timed
from etcd_stack.config import Bootstrap
from etcd_stack.sandbox import cluster as sandbox

RUNS = 2


def _sandbox_up(size: int, bootstrap: Bootstrap) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "sandbox"
        cfg = stack_config(size, bootstrap.value)
        try:
            return timed(lambda: sandbox.up(directory, "bench", cfg, bootstrap, report=lambda _: None))
        finally:
            sandbox.down(directory)


def _bare_up(binary: str, size: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        cluster = BareCluster(binary, Path(scratch), size)
        try:
            return timed(lambda: (cluster.start(), cluster.wait_healthy()))
        finally:
            cluster.stop()


def run() -> list[Figure]:
    binary = str(sandbox.find_etcd())
    figures = []
    for size in (3, 5):
        bare = median_of(RUNS, lambda size=size: _bare_up(binary, size))
        for bootstrap in Bootstrap:
            measured = median_of(RUNS, lambda size=size, bootstrap=bootstrap: _sandbox_up(size, bootstrap))
            figures.append(Figure(
                "bootstrap", f"sandbox up, {size} members, {bootstrap.value}", measured, bare, "s",
                f"bare etcd, {size} members, plaintext, static",
                "includes issuing certificates and rendering; discovery includes starting its backend",
            ))
    return figures

"""`python -m bench`: every benchmark, each figure beside a baseline measured in the same run.
Prints a table and writes docs/PERFORMANCE.md."""

from __future__ import annotations

import datetime
import sys
import time

from bench import bootstrap, critical_path, failover, program, rolling, throughput
from bench.common import Figure, machine
from etcd_stack.preview.offline import PROJECT_DIR
from etcd_stack.sandbox import cluster as sandbox

REPORT = PROJECT_DIR / "docs" / "PERFORMANCE.md"


def table(figures: list[Figure]) -> list[str]:
    rows = ["| section | figure | value | baseline | ratio |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        rows.append(f"| {f.section} | {f.name} | {f.value:.3g} {f.unit} | {f.baseline:.3g} {f.unit} "
                    f"({f.baseline_name}) | {f.ratio:.2f} |")
    return rows


def main() -> int:
    started = time.monotonic()
    figures: list[Figure] = []
    for name, module in (("program", program), ("bootstrap", bootstrap), ("failover", failover),
                         ("throughput", throughput), ("rolling", rolling)):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures += module.run()
    deploy, findings = critical_path.run()
    figures += deploy
    binary = sandbox.find_etcd()
    shown = binary.relative_to(PROJECT_DIR) if binary.is_relative_to(PROJECT_DIR) else binary
    host = machine()
    lines = table(figures)
    print("\n".join(lines))
    for line in findings:
        print(line)
    notes = [f"- {f.section}, {f.name}: {f.note}" for f in figures if f.note]
    REPORT.write_text("\n".join([
        "# Performance",
        "",
        "Written by `python -m bench` (`make bench`); every figure is measured beside its baseline in the same "
        "run, and only the ratio carries over to another machine.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {host['cpu']}, {host['cores']} cores, {host['memory']} memory",
        f"- etcd: {sandbox.etcd_version(binary)} ({shown})",
        f"- the whole run took {time.monotonic() - started:.0f} s",
        "",
        *lines,
        "",
        "Notes:",
        "",
        *notes,
        *[f"- {line}" for line in findings],
        "",
        "The deploy model's creation time per resource type, each with its source, is in "
        "`bench/creation_times.json`; types without a documented figure count 2 s (an API call), and work done "
        "by Pulumi itself (certificates, the discovery token, components) counts nothing.",
        "",
    ]))
    print(f"wrote {REPORT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench`: every benchmark, each figure beside a baseline measured in the same run.
Prints a table and writes docs/PERFORMANCE.md.

A section that measured but did not reach its condition (throughput never shown to saturate) is reported as
incomplete and the run goes on; a section that raised is reported as not run, the others are still written,
and the exit status is 1. `--only SECTION` runs one section and writes a report only with `--out`, so a
partial run never replaces the full report by accident.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench import bootstrap, critical_path, failover, program, rolling, throughput
from bench.common import Outcome, machine
from bench.report import Result, render, table
from etcd_stack.preview.offline import PROJECT_DIR
from etcd_stack.sandbox import cluster as sandbox

REPORT = PROJECT_DIR / "docs" / "PERFORMANCE.md"
Section = Callable[[], Outcome]
# In the report's order.
SECTIONS: dict[str, Section] = {
    "program": lambda: Outcome(program.run()),
    "bootstrap": lambda: Outcome(bootstrap.run()),
    "failover": lambda: Outcome(failover.run()),
    "throughput": throughput.run,
    "deploy": lambda: Outcome(*critical_path.run()),
    "rolling": lambda: Outcome(rolling.run()),
}
ERROR_CHARS = 400


def environment() -> list[str]:
    """When, on what machine and with which etcd the figures were measured."""
    host = machine()
    try:
        binary = sandbox.find_etcd()
        shown = binary.relative_to(PROJECT_DIR) if binary.is_relative_to(PROJECT_DIR) else binary
        etcd = f"{sandbox.etcd_version(binary)} ({shown})"
    except Exception as error:  # the report is written even when no etcd could be found
        etcd = f"unavailable ({one_line(error)})"
    return [f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            f"machine: {host['cpu']}, {host['cores']} cores, {host['memory']} memory",
            f"etcd: {etcd}"]


def one_line(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 3] + "..."


def run_section(name: str, section: Section) -> Result:
    """One section; an exception becomes its result (its traceback goes to stderr) so the others still run."""
    print(f"running {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        outcome = section()
    except Exception as error:
        traceback.print_exc()
        result = Result(name, time.monotonic() - started, error=one_line(error))
        print(f"{name}: could not run: {result.error}", file=sys.stderr, flush=True)
        return result
    result = Result(name, time.monotonic() - started, outcome)
    state = f"incomplete: {outcome.incomplete}" if outcome.incomplete else "done"
    print(f"{name}: {state} ({result.seconds:.0f} s)", file=sys.stderr, flush=True)
    return result


def parse(argv: Sequence[str] | None, names: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="SECTION", help=f"run one section: {', '.join(names)}")
    parser.add_argument("--out", type=Path, help="write the report here (default: docs/PERFORMANCE.md for a full "
                                                 "run, none with --only)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, sections: Mapping[str, Section] = SECTIONS,
         describe: Callable[[], list[str]] = environment) -> int:
    args = parse(argv, list(sections))
    if args.only is not None and args.only not in sections:
        print(f"python -m bench: --only: unknown section {args.only!r}; allowed: {', '.join(sections)}",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    chosen = [args.only] if args.only else list(sections)
    results = [run_section(name, sections[name]) for name in chosen]
    ran = [r for r in results if r.outcome]
    incomplete = frozenset(r.section for r in ran if r.outcome.incomplete)
    print("\n".join(table([f for r in ran for f in r.outcome.figures], incomplete)))
    for r in ran:
        for line in r.outcome.findings:
            print(line)
    out = args.out or (None if args.only else REPORT)
    if out:
        out.write_text(render(results, describe(), time.monotonic() - started, args.only))
        print(f"wrote {out}", file=sys.stderr)
    failed = [r.section for r in results if r.outcome is None]
    if failed:
        print(f"could not run: {', '.join(failed)} (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

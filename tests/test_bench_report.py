"""The benchmark's run and report logic with stub sections and a stub load generator (no etcd is started): a
section that misses its condition is marked and the others are written; one that raises fails the command but
not the report; `--only` runs one section; the saturation search goes further before it gives up."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import __main__ as cli
from bench import throughput
from bench.common import Figure, Outcome
from etcd_stack.preview.offline import PROJECT_DIR

ENVIRONMENT = ["date: 2026-12-04 12:00 UTC", "machine: stub, 2 cores, 1 kB memory", "etcd: 3.6.14 (stub)"]


class Clock:
    """Time that passes only while the stub generator works."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Generator:
    """A stand-in for `benchmark put`: puts/s from `rate(clients, puts)`, taking puts/rate seconds of the clock."""

    def __init__(self, rate: Callable[[int, int], float], clock: Clock, run_s: float | None = None):
        self.rate, self.clock, self.run_s = rate, clock, run_s
        self.calls: list[tuple[int, int]] = []

    def __call__(self, clients: int, puts: int) -> throughput.Run:
        self.calls.append((clients, puts))
        rate = self.rate(clients, puts)
        self.clock.now += self.run_s or puts / rate
        return {"throughput": rate, "p50": 1000 * clients / rate, "p99": 2000 * clients / rate,
                "clients": clients, "puts": puts}

    def cluster(self) -> contextlib.AbstractContextManager[throughput.Measure]:
        return contextlib.nullcontext(self)


def rising(clients: int, puts: int) -> float:
    """Twice the throughput for four times the clients, at any length of run: never saturated."""
    return 1000 * clients ** 0.5


def stub_throughput(tls_rate: Callable[[int, int], float], plain_rate: Callable[[int, int], float] | None = None,
                    budget_s: float = throughput.BUDGET_S, run_s: float | None = None
                    ) -> tuple[Generator, Generator, Outcome]:
    clock = Clock()
    tls, plain = Generator(tls_rate, clock, run_s), Generator(plain_rate or tls_rate, clock, run_s)
    found_tls, found_plain, seconds = throughput.measure_both(tls.cluster, plain.cluster, clock, budget_s)
    return tls, plain, throughput.figures(found_tls, found_plain, seconds, "stub generator", budget_s)


def stub_section(section: str, calls: list[str]) -> cli.Section:
    def run() -> Outcome:
        calls.append(section)
        return Outcome([Figure(section, f"{section} figure", 2.0, 1.0, "s", f"{section} baseline", f"{section} note")],
                       findings=[f"{section} finding"])
    return run


def stub_sections(calls: list[str], **replaced: cli.Section) -> dict[str, cli.Section]:
    return {name: replaced.get(name, stub_section(name, calls)) for name in cli.SECTIONS}


def test_a_throughput_that_keeps_rising_is_marked_incomplete_and_every_other_section_is_written(tmp_path: Path):
    calls: list[str] = []
    generators: list[Generator] = []

    def never_saturated() -> Outcome:
        tls, plain, outcome = stub_throughput(rising)
        generators.extend((tls, plain))
        return outcome

    out = tmp_path / "PERFORMANCE.md"
    code = cli.main(["--out", str(out)], stub_sections(calls, throughput=never_saturated), lambda: ENVIRONMENT)

    assert code == 0  # incomplete is not failed: the run went on and wrote everything
    text = out.read_text()
    top = text.split("| section |")[0]
    assert ("- **incomplete: throughput**: TLS cluster not saturated at 8192 clients: 2.00x over 2048, also in runs "
            "2 and 4 times as long; plain cluster not saturated at 8192 clients: 2.00x over 2048") in top
    assert calls == ["program", "bootstrap", "failover", "deploy", "rolling"]
    for section in calls:
        assert f"| {section} | {section} figure | 2 s | 1 s ({section} baseline) | 2.00 |" in text
        assert f"- {section} finding" in text
    rows = [line for line in text.splitlines() if line.startswith("| throughput")]
    assert len(rows) == 5 and all(row.startswith("| throughput (incomplete) |") for row in rows)
    assert "puts per second, TLS, 8192 vs 2048 clients" in text
    assert "starts no run after 480 s" in text  # the budget is stated
    # It went on to more clients, then ran the last pair twice and four times as long, before giving up.
    tls = generators[0]
    assert [clients for clients, _ in tls.calls] == [8, 32, 128, 512, 2048, 8192, 2048, 8192, 2048, 8192]
    assert [puts for clients, puts in tls.calls if clients == 8192] == [163840, 327680, 655360]


def test_a_pair_that_only_looked_rising_in_short_runs_settles_on_longer_runs():
    def noisy(clients: int, puts: int) -> float:
        flat = {8: 1000, 32: 2000, 128: 3000, 512: 4000, 2048: 5000, 8192: 5000}[clients]
        return 5600 if clients == 8192 and puts <= throughput.puts_for(8192) else flat  # 1.12x, short runs only

    tls, _, outcome = stub_throughput(noisy, lambda clients, puts: 1000 * min(clients, 512) ** 0.5)

    assert outcome.incomplete == ""
    assert tls.calls[-2:] == [(2048, 2 * throughput.puts_for(2048)), (8192, 2 * throughput.puts_for(8192))]
    assert outcome.figures[3].name == "puts per second, TLS, 8192 vs 2048 clients"
    assert outcome.figures[3].ratio == 1.0
    assert "the cluster is saturated" in outcome.figures[3].note


def test_the_search_starts_no_run_after_its_budget_and_says_so():
    # Every run takes 100 s: TLS has the first half of the 600 s, the plain cluster the rest.
    tls, plain, outcome = stub_throughput(rising, budget_s=600, run_s=100)

    assert [c for c, _ in tls.calls] == [8, 32, 128] and [c for c, _ in plain.calls] == [8, 32, 128]
    assert outcome.incomplete == ("TLS cluster not saturated at 128 clients: 2.00x over 32; the search's 600 s budget "
                                  "ran out; plain cluster not saturated at 128 clients: 2.00x over 32; the search's "
                                  "600 s budget ran out")
    assert outcome.figures[3].name == "puts per second, TLS, 128 vs 32 clients"
    assert "starts no run after 600 s" in outcome.figures[0].note


def test_a_search_that_ran_out_of_time_before_two_runs_on_both_clusters_could_not_run():
    with pytest.raises(RuntimeError, match="the 150 s budget ran out before two concurrencies ran on both clusters"):
        stub_throughput(rising, budget_s=150, run_s=100)


def test_tls_runs_again_when_the_plain_cluster_saturates_at_more_clients():
    def tls_rate(clients: int, puts: int) -> float:
        return 1000 * min(clients, 128) ** 0.5  # saturated from 128: compared at 512

    def plain_rate(clients: int, puts: int) -> float:
        return 1000 * min(clients, 512) ** 0.5  # saturated from 512: compared at 2048

    tls, plain, outcome = stub_throughput(tls_rate, plain_rate)

    assert [c for c, _ in tls.calls] == [8, 32, 128, 512, 2048]
    assert [c for c, _ in plain.calls] == [8, 32, 128, 512, 2048]
    assert outcome.incomplete == ""
    assert outcome.figures[0].value == tls_rate(2048, 0) and outcome.figures[0].baseline == plain_rate(2048, 0)
    assert outcome.figures[4].name == "puts per second, plain, 2048 vs 512 clients"


def test_only_runs_one_section_and_writes_no_report_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cli, "REPORT", tmp_path / "PERFORMANCE.md")
    calls: list[str] = []
    assert cli.main(["--only", "failover"], stub_sections(calls), lambda: ENVIRONMENT) == 0
    assert calls == ["failover"]
    assert not (tmp_path / "PERFORMANCE.md").exists()  # a partial run never replaces the full report

    out = tmp_path / "failover.md"
    assert cli.main(["--only", "failover", "--out", str(out)], stub_sections(calls), lambda: ENVIRONMENT) == 0
    assert calls == ["failover", "failover"]
    text = out.read_text()
    assert "Only the failover section was run (`python -m bench --only failover`)." in text
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")][2:] == ["| failover"]


def test_a_section_that_raises_fails_the_command_and_every_other_section_is_still_written(tmp_path: Path):
    calls: list[str] = []

    def broken() -> Outcome:
        raise RuntimeError("etcd would not start:\n  member 127.0.0.11 exited")

    out = tmp_path / "PERFORMANCE.md"
    code = cli.main(["--out", str(out)], stub_sections(calls, failover=broken), lambda: ENVIRONMENT)

    assert code == 1
    text = out.read_text()
    assert ("- **could not run: failover**: RuntimeError: etcd would not start: member 127.0.0.11 exited"
            in text.split("| section |")[0])
    assert calls == ["program", "bootstrap", "throughput", "deploy", "rolling"]
    for section in calls:
        assert f"| {section} | {section} figure |" in text
    assert "| failover |" not in text


def test_a_report_where_every_section_reached_its_condition_says_so(tmp_path: Path):
    out = tmp_path / "PERFORMANCE.md"
    assert cli.main(["--out", str(out)], stub_sections([]), lambda: ENVIRONMENT) == 0
    text = out.read_text()
    assert "Every section ran and reached its condition." in text
    assert "(incomplete)" not in text and "could not run" not in text
    assert "- etcd: 3.6.14 (stub)" in text


def test_an_unknown_section_is_one_line_naming_the_allowed_ones():
    result = subprocess.run([sys.executable, "-m", "bench", "--only", "throughputs"], cwd=PROJECT_DIR,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr == ("python -m bench: --only: unknown section 'throughputs'; allowed: program, bootstrap, "
                             "failover, throughput, deploy, rolling\n")
    assert result.stdout == ""

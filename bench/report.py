"""docs/PERFORMANCE.md from the sections' results: plain values in, text out. Which sections are incomplete or
could not run is said at the top, so a reader never takes a partial figure for a settled one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import Figure, Outcome

INCOMPLETE = "(incomplete)"
DEPLOY_MODEL = ("The deploy model's creation time per resource type, each with its source, is in "
                "`bench/creation_times.json`; types without a documented figure count 2 s (an API call), and work "
                "done by Pulumi itself (certificates, the discovery token, components) counts nothing.")


@dataclass(frozen=True)
class Result:
    """One section's run: what it measured, or (outcome None) the one-line error that stopped it."""

    section: str
    seconds: float
    outcome: Outcome | None = None
    error: str = ""


def table(figures: Sequence[Figure], incomplete: frozenset[str] = frozenset()) -> list[str]:
    """The figures as a Markdown table; the rows of an incomplete section say so beside its name."""
    rows = ["| section | figure | value | baseline | ratio |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        section = f"{f.section} {INCOMPLETE}" if f.section in incomplete else f.section
        rows.append(f"| {section} | {f.name} | {f.value:.3g} {f.unit} | {f.baseline:.3g} {f.unit} "
                    f"({f.baseline_name}) | {f.ratio:.2f} |")
    return rows


def status(results: Sequence[Result]) -> list[str]:
    """The lines at the top: every incomplete section with why, every section that could not run with its error."""
    lines = [f"- **incomplete: {r.section}**: {r.outcome.incomplete}; its figures below are what it measured"
             for r in results if r.outcome and r.outcome.incomplete]
    lines += [f"- **could not run: {r.section}**: {r.error}" for r in results if r.outcome is None]
    return lines or ["Every section ran and reached its condition."]


def render(results: Sequence[Result], environment: Sequence[str], seconds: float,
           only: str | None = None) -> str:
    """The whole report: status, where and when it ran, the table, the notes."""
    ran = [r for r in results if r.outcome]
    figures = [f for r in ran for f in r.outcome.figures]
    incomplete = frozenset(r.section for r in ran if r.outcome.incomplete)
    scope = (f"Only the {only} section was run (`python -m bench --only {only}`)." if only else
             "Sections: " + ", ".join(f"{r.section} ({r.seconds:.0f} s)" for r in results) + ".")
    notes = [f"- {f.section}, {f.name}: {f.note}" for f in figures if f.note]
    notes += [f"- {line}" for r in ran for line in r.outcome.findings]
    return "\n".join([
        "# Performance",
        "",
        "Written by `python -m bench` (`make bench`); every figure is measured beside its baseline in the same "
        "run, and only the ratio carries over to another machine.",
        "",
        *status(results),
        "",
        *[f"- {line}" for line in environment],
        f"- the whole run took {seconds:.0f} s",
        "",
        scope,
        "",
        *table(figures, incomplete),
        "",
        "Notes:",
        "",
        *notes,
        *(["", DEPLOY_MODEL] if any(r.section == "deploy" for r in ran) else []),
        "",
    ])

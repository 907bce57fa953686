"""Program cost: `etcd-stack render` for 1, 3, 5 and 7 members, as a user runs it (a fresh process)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import Figure, median_of, timed
from etcd_stack.preview.offline import PROJECT_DIR

RUNS = 3
SIZES = (1, 3, 5, 7)


def _render(project: Path, size: int) -> None:
    subprocess.run([sys.executable, "-m", "etcd_stack.cli", "render", "--stack", f"size{size}", "--out",
                    str(project / f"out{size}"), "--project-dir", str(project)],
                   check=True, capture_output=True)


def _imports() -> None:
    subprocess.run([sys.executable, "-c", "import etcd_stack.cli, etcd_stack.preview.offline, pulumi_aws, pulumi_tls"],
                   check=True, capture_output=True)


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        shutil.copy(PROJECT_DIR / "__main__.py", project / "__main__.py")
        for size in SIZES:
            settings = {"aws:region": "eu-west-2", "etcd:bastion": False, "etcd:bootstrap": "static",
                        "etcd:clusterSize": size}
            (project / f"Pulumi.size{size}.yaml").write_text(yaml.safe_dump({"config": settings}))
        baseline = median_of(RUNS, lambda: timed(_imports))
        times = {size: median_of(RUNS, lambda size=size: timed(lambda: _render(project, size))) for size in SIZES}
    figures = [Figure("program", f"render, {size} members", times[size], baseline, "s",
                      "a process that only imports the program's modules") for size in SIZES]
    figures.append(Figure("program", "growth from 3 to 7 members", times[7], times[3], "s", "render, 3 members",
                          "how render time grows with the cluster"))
    return figures

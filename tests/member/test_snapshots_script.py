"""etcd-snapshots against S3 under bash, with a stub `aws` first on PATH standing in for the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from etcd_stack.member import rendering
from etcd_stack.member.rendering import Paths
from tests.member.test_rendering import MEMBERS, settings

LISTING = "etcd/20261121T100012Z-etcd-0.db\t20512\netcd/notes.txt\t3\netcd/20261121T090011Z-etcd-1.db\t20480\n"


def run_listing(tmp_path: Path, answer: str) -> tuple[subprocess.CompletedProcess, str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "aws").write_text(f'#!/bin/bash\necho "$*" > "{tmp_path}/asked"\nprintf %b {answer!r}\n')
    (stubs / "aws").chmod(0o755)
    script = tmp_path / "etcd-snapshots"
    script.write_text(rendering.snapshots_script(settings(), MEMBERS[0], Paths()))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, check=False,
                            env={"PATH": f"{stubs}:{os.environ['PATH']}"})
    return result, (tmp_path / "asked").read_text().strip()


def test_snapshots_in_the_bucket_are_listed_oldest_first_and_nothing_else(tmp_path):
    result, asked = run_listing(tmp_path, LISTING)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("s3://etcd-backup-1a2b3c/etcd/20261121T090011Z-etcd-1.db 20480\n"
                             "s3://etcd-backup-1a2b3c/etcd/20261121T100012Z-etcd-0.db 20512\n")
    assert asked == ("s3api list-objects-v2 --region eu-west-2 --bucket etcd-backup-1a2b3c --prefix etcd/ "
                     "--query Contents[].[Key,Size] --output text")


@pytest.mark.parametrize("answer", ["None\n", ""])
def test_an_empty_bucket_lists_nothing(tmp_path, answer):
    result, _ = run_listing(tmp_path, answer)
    assert (result.returncode, result.stdout) == (0, "")

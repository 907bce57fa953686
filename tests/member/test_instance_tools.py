"""What every member runs, accepted by the programs that consume it: cloud-init, systemd, shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etcd_stack.sandbox import binaries
from tests.conftest import written_file

UNIT = "/etc/systemd/system/etcd.service"
UNITS = [UNIT, "/etc/systemd/system/etcd-backup.service", "/etc/systemd/system/etcd-backup.timer",
         "/etc/systemd/system/etcd-grow.service", "/etc/systemd/system/etcd-grow.timer",
         "/etc/systemd/system/etcd-metrics.service", "/etc/systemd/system/etcd-metrics.timer",
         "/etc/systemd/system/etcd-defrag.service", "/etc/systemd/system/etcd-defrag.timer"]
SCRIPTS = [f"/usr/local/sbin/{name}" for name in ("etcd-bootstrap", "etcd-join", "etcd-backup", "etcd-restore",
                                                   "etcd-ctl", "etcd-snapshots", "etcd-defrag")]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test` installs it (Debian package list in the Makefile)"
    return path


def test_every_variant_rendered_its_members(rendered_members):
    assert len(rendered_members) == 3 + 5 + 3 + 3


def test_cloud_init_accepts_every_member_user_data(rendered_members, tmp_path):
    cloud_init = tool("cloud-init")
    for name, user_data in rendered_members.items():
        path = tmp_path / name.replace("/", "-")
        path.write_text(user_data)
        result = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_catches_a_broken_document(tmp_path):
    path = tmp_path / "broken"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 644\n    content: 1\n    owner: [a]\n")
    result = subprocess.run([tool("cloud-init"), "schema", "--config-file", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory) -> Path:
    """A root with the system's own units, where the unit's ExecStart binary exists."""
    root = tmp_path_factory.mktemp("root")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/local/bin").mkdir(parents=True)
    # The stack's default etcd, as the test set-up installs it (etcd_stack/sandbox/binaries.py).
    shutil.copy(binaries.directory(binaries.default_version()) / "etcd", root / "usr/local/bin/etcd")
    # The metrics publisher's interpreter, where AL2023 has it.
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(Path(sys.executable).resolve(), root / "usr/bin/python3")
    (root / "etc/systemd/system").mkdir(parents=True)
    # The backup service's ExecCondition asks systemctl whether etcd runs.
    shutil.copy(tool("systemctl"), root / "usr/bin/systemctl")
    return root


def verify_unit(root: Path, text: str, path: str = UNIT) -> subprocess.CompletedProcess:
    (root / path.lstrip("/")).write_text(text)
    return subprocess.run([tool("systemd-analyze"), "verify", f"--root={root}", Path(path).name],
                          capture_output=True, text=True, check=False)


def test_systemd_verifies_every_member_unit_without_a_word(rendered_members, systemd_root):
    (systemd_root / "usr/local/sbin").mkdir(parents=True, exist_ok=True)
    units = {}
    for name, user_data in rendered_members.items():
        assert f"Description=etcd member {name.split('/')[1]} of cluster etcd" in written_file(user_data, UNIT)
        for path in UNITS:
            units[(path, written_file(user_data, path))] = name
        # What the units run must exist.
        for program in ("etcd-backup", "etcd-bootstrap", "etcd-metrics", "etcd-defrag"):
            script = systemd_root / "usr/local/sbin" / program
            script.write_text(written_file(user_data, f"/usr/local/sbin/{program}"))
            script.chmod(0o755)
    assert {path for path, _ in units} == set(UNITS)
    for path, unit in units:
        result = verify_unit(systemd_root, unit, path)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), (path, unit)


def test_systemd_verify_would_report_a_misspelt_key(rendered_members, systemd_root):
    unit = written_file(next(iter(rendered_members.values())), UNIT).replace("LimitNOFILE", "LimitNOFILES")
    result = verify_unit(systemd_root, unit)
    assert "Unknown key 'LimitNOFILES'" in result.stdout + result.stderr


def test_unit_runs_etcd_as_a_notify_service_that_stops_gracefully(rendered_members):
    unit = written_file(rendered_members["static-3.6-amd64/etcd-0"], UNIT)
    lines = set(unit.splitlines())
    assert {"Type=notify", "Restart=on-failure", "LimitNOFILE=65536", "TimeoutStopSec=30s", "User=etcd"} <= lines
    assert "ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.yaml" in lines


def test_shellcheck_passes_every_bootstrap_script(rendered_members, tmp_path):
    shellcheck = tool("shellcheck")
    scripts = []
    for name, user_data in rendered_members.items():
        for script in SCRIPTS:
            path = tmp_path / f"{name.replace('/', '-')}-{Path(script).name}"
            path.write_text(written_file(user_data, script))
            scripts.append(str(path))
    assert len(scripts) == len(rendered_members) * len(SCRIPTS)
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", *scripts], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_shellcheck_would_catch_an_unquoted_variable(tmp_path):
    path = tmp_path / "bad.sh"
    path.write_text("#!/bin/bash\nrm -rf $1/*\n")
    result = subprocess.run([tool("shellcheck"), str(path)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


@pytest.mark.parametrize("service", ["etcd-backup", "etcd-defrag"])
def test_the_timers_services_never_start_etcd_and_are_skipped_while_etcd_is_stopped(rendered_members, service):
    unit = written_file(rendered_members["static-3.6-amd64/etcd-0"], f"/etc/systemd/system/{service}.service")
    lines = unit.splitlines()
    # Nothing that would pull etcd in (and restart a member an operator stopped for a restore).
    pulls = ("Wants=", "Requires=", "BindsTo=", "Upholds=", "PartOf=")
    assert not [line for line in lines if line.startswith(pulls) and "etcd.service" in line]
    (condition,) = [line.split("=", 1)[1] for line in lines if line.startswith("ExecCondition=")]
    assert condition == "/usr/bin/systemctl is-active --quiet etcd.service"
    # systemd skips the service when the condition exits 1-254; etcd runs nowhere on this machine.
    result = subprocess.run(condition.split(), capture_output=True, text=True, check=False)
    assert 1 <= result.returncode <= 254

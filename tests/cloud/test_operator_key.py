"""Without the shared operator key (etcd:operatorKey false) no client private key is in the stack at all: people
use certificates signed from their own requests, and the etcdctl commands the stack hands out use those."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from etcd_stack import cli
from etcd_stack.preview.wire import reveal

KEY = "tls:index/privateKey:PrivateKey"


def request_for(directory: Path, person: str) -> str:
    """The request `etcd-stack operator-csr` makes on the person's machine."""
    assert cli.main(["operator-csr", "--name", person, "--out", str(directory)]) == 0
    return (directory / f"{person}.csr").read_text()


def test_no_operator_key_is_made_or_handed_out(run_stack, tmp_path):
    csr = request_for(tmp_path, "alice")
    run = run_stack(bastion=False, operatorKey=False, operatorCsrs={"alice": csr})
    keys = {r.name for r in run.of_type(KEY)}
    assert not any("operator" in name for name in keys), keys
    assert run.outputs["operatorCertPem"] is None and run.outputs["operatorKeyPem"] is None
    assert "alice" in reveal(run.outputs["operatorCerts"])
    with_key = run_stack(bastion=False)
    assert any("operator" in r.name for r in with_key.of_type(KEY))


def test_the_handed_out_commands_fetch_the_persons_own_certificate(run_stack, tmp_path):
    run = run_stack(bastion=False, operatorKey=False, operatorCsrs={"alice": request_for(tmp_path, "alice")})
    commands = run.outputs["etcdctl"]
    assert not any("operatorKeyPem" in command or "etcd-operator.key" in command for command in commands)
    tls = '--cert "$ETCD_OPERATOR.crt" --key "$ETCD_OPERATOR.key"'
    assert all(tls in command for command in commands if command.startswith("etcdctl"))
    # The fetch line run by bash against a `pulumi` that answers as the CLI would.
    stub = tmp_path / "bin" / "pulumi"
    stub.parent.mkdir()
    certs = {"alice": "-----BEGIN CERTIFICATE-----\nalice\n-----END CERTIFICATE-----\n", "bob": "bob\n"}
    stub.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(certs)}\nEOF\n")
    stub.chmod(0o755)
    fetch = next(command for command in commands if "operatorCerts" in command)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "ETCD_OPERATOR": "alice"}
    subprocess.run(["bash", "-c", fetch], cwd=tmp_path, env=env, check=True, timeout=30)
    assert Path(tmp_path / "alice.crt").read_text() == certs["alice"]

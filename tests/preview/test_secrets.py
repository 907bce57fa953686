"""No private key or other secret in plain text: not in the inventory, not in any user_data, not in an
output that is not itself secret."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from etcd_stack.member import rendering
from etcd_stack.preview import offline
from etcd_stack.preview.wire import reveal
from tests.conftest import encode, openssh_public

PEM_BODY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.+?)\n-----END", re.S)


@pytest.fixture(scope="module")
def stack():
    raw = {"aws:region": "eu-west-2", "etcd:sshAllowedCidrs": encode(["198.51.100.7/32"]),
           "etcd:sshPublicKey": openssh_public(ed25519.Ed25519PrivateKey.generate())}
    return offline.run(raw, "test")


def secrets_of(run) -> list[str]:
    """Every private key the program handles, as the lines of its PEM body."""
    keys = [reveal(k.state["privateKeyPem"]) for k in run.of_type("tls:index/privateKey:PrivateKey")]
    assert len(keys) == 1 + 3 + 1  # the CA, three members, the operator
    return [line for key in keys for line in PEM_BODY.search(key).group(1).splitlines() if len(line) > 16]


def leaks(text: str, secret_lines: list[str]) -> list[str]:
    found = ["PRIVATE KEY"] if "PRIVATE KEY" in text else []
    return found + [line for line in secret_lines if line in text]


def test_the_inventory_holds_no_secret(stack):
    inventory = json.dumps([r.public() for r in stack.resources])
    assert leaks(inventory, secrets_of(stack)) == []
    assert inventory.count('"[secret]"') >= 5


def test_no_user_data_holds_a_secret(stack):
    lines = secrets_of(stack)
    for instance in stack.of_type("aws:ec2/instance:Instance"):
        encoded = instance.inputs.get("userDataBase64")
        if encoded:
            assert leaks(rendering.decompress(encoded), lines) == []
            assert leaks(base64.b64decode(encoded).decode("latin-1"), lines) == []


def test_only_secret_outputs_carry_a_private_key(stack):
    lines = secrets_of(stack)
    # The discovery URL is no key, but whoever holds it can register members into the bootstrap.
    assert stack.secret_outputs == {"operatorKeyPem", "discoveryUrl"}
    public = {name: value for name, value in stack.outputs.items() if name not in stack.secret_outputs}
    assert leaks(json.dumps(public), lines) == []
    assert leaks(stack.outputs["operatorKeyPem"], lines)  # the one output that is a key, and it is secret


def test_the_files_render_writes_hold_no_secret(tmp_path):
    out = tmp_path / "render"
    result = subprocess.run([sys.executable, "-m", "etcd_stack.cli", "render", "--stack", "dev", "--out", str(out)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(written) == 1 + 3
    for path in written:
        assert "PRIVATE KEY" not in path.read_text(), path

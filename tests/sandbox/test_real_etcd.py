"""The rendered etcd configuration and the member scripts, fed to real etcd of every supported line: every
key known to that line, a three-member TLS cluster that starts from the rendered files and answers /health,
and a snapshot saved, checked and restored with the line's own tool."""

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
from etcd_stack.ops import procedures as operations
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox.gateway import health, local_session
from etcd_stack.sandbox.local import local_members, local_paths
from etcd_stack.sandbox.transport import SandboxTransport
from tests.conftest import VARIANTS, written_file

# etcd 3.4 is Debian's etcd-server unpacked into the virtualenv (scripts/install-test-tools); 3.5, 3.6 and 3.7
# are the exact versions etcd_stack/sandbox/binaries.py installs for the tests (`make test`).
ETCD_3_4 = Path(sys.executable).parent.parent / "etcd-3.4" / "usr" / "bin" / "etcd"
LINES = [(3, 4), (3, 5), (3, 6), (3, 7)]
IDS = [f"{major}.{minor}" for major, minor in LINES]
TRANSPORT_FLAG_PREFIX = {"client-transport-security": "", "peer-transport-security": "peer-"}
# Before 3.5.15 the peer pin reaches etcd through the Go field the flag also fills.
GO_FIELD_FLAGS = {("PeerTLSInfo", "AllowedHostname"): "peer-cert-allowed-hostname"}


def installed() -> dict[tuple[int, int], Path]:
    found = {(3, 4): ETCD_3_4} if ETCD_3_4.exists() else {}
    for version in binaries.tested_versions():
        home = binaries.installed(version)
        if home:
            found[sandbox.parse_version(version).line] = home / "etcd"
    return found


BINARIES = installed()
TESTED = {sandbox.parse_version(version).line: version for version in binaries.tested_versions()}


def test_the_set_up_installed_every_supported_line_at_its_exact_version():
    assert set(BINARIES) == set(LINES), "`make test` installs etcd 3.4 (Debian) and the versions binaries.py tests"
    for line, version in TESTED.items():
        assert str(sandbox.etcd_version(BINARIES[line])) == version
    assert TESTED[(3, 6)] == "3.6.14" == binaries.default_version()


def cluster(line: tuple[int, int], bootstrap: Bootstrap, members, token: str = "sandbox-test") -> ClusterSettings:
    return ClusterSettings(
        name="sandbox", token=token, version=EtcdVersion(*line, 0), bootstrap=bootstrap, members=members,
        heartbeat_ms=100, election_ms=1000, quota_backend_bytes=rendering.quota_backend_bytes(20),
        discovery_url="https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de",
    )


def bootstraps(line: tuple[int, int]) -> list[Bootstrap]:
    # etcd 3.7 has no v2 discovery; config.py refuses the pair before anything renders.
    return [Bootstrap.STATIC] if line >= (3, 7) else list(Bootstrap)


def rendered(line: tuple[int, int], bootstrap: Bootstrap, tmp_path: Path) -> dict:
    members = local_members(3)
    return rendering.etcd_config(cluster(line, bootstrap, members), members[0], local_paths(tmp_path, members[0]))


# --- the keys: as command-line flags (strict in every line), and as the file's own fields --------------

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


STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.M | re.S)
FIELD = re.compile(r"^\t(\w+)(?:[ \t]+([\w.\[\]*]+))?(?:[ \t]+`[^`]*?json:\"([^\",]*)[^`]*`)?[ \t]*(?://.*)?$", re.M)


def file_fields(version: str) -> dict[str, set[str] | None]:
    """The keys etcd's --config-file can set, from the exact source the binary was built from: the fields of
    embed's configYAML (etcd decodes the file into it with sigs.k8s.io/yaml, i.e. encoding/json field
    rules), with embedded structs flattened; a key whose field is a struct maps to that struct's keys."""
    embed = binaries.module_source(version) / "embed"
    structs: dict[str, list[tuple[str, str | None, str | None]]] = {}
    for path in sorted(embed.glob("*.go")):
        if not path.name.endswith("_test.go"):
            for name, body in STRUCT.findall(path.read_text()):
                structs[name] = FIELD.findall(body)

    def keys(struct: str) -> dict[str, set[str] | None]:
        found: dict[str, set[str] | None] = {}
        for name, kind, tag in structs[struct]:
            if not kind:  # an embedded struct: its fields are the file's own
                found.update(keys(name))
            elif tag != "-":
                found[tag or name] = set(keys(kind)) if kind in structs else None
        return found

    return keys("configYAML")


def unknown_keys(config: dict, fields: dict[str, set[str] | None]) -> list[str]:
    unknown = [key for key in config if key not in fields]
    for key, value in config.items():
        if isinstance(value, dict) and fields.get(key) is not None:
            unknown += [f"{key}.{inner}" for inner in value if inner not in fields[key]]
    return unknown


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_every_key_the_renderer_emits_is_a_flag_the_real_etcd_of_that_line_accepts(line, tmp_path):
    for bootstrap in bootstraps(line):
        result = etcd_accepts(BINARIES[line], as_flags(rendered(line, bootstrap, tmp_path)))
        assert result.returncode == 0, (bootstrap, result.stderr[:500])
        assert f"etcd Version: {line[0]}.{line[1]}." in result.stdout


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_the_flag_check_refuses_a_key_etcd_does_not_know(line):
    result = etcd_accepts(BINARIES[line], ["--client-cert-auth=true", "--peer-client-cert-auth-typo=true"])
    assert result.returncode != 0 and "peer-client-cert-auth-typo" in result.stderr


@pytest.mark.parametrize("line", [(3, 5), (3, 6), (3, 7)], ids=IDS[1:])
def test_every_key_of_the_rendered_file_is_a_field_of_that_line_s_config_file(line, tmp_path):
    fields = file_fields(TESTED[line])
    assert {"name", "data-dir", "heartbeat-interval", "client-transport-security"} <= set(fields)
    assert "cert-file" in fields["client-transport-security"]
    for bootstrap in bootstraps(line):
        assert unknown_keys(rendered(line, bootstrap, tmp_path), fields) == [], bootstrap


@pytest.mark.parametrize("line", [(3, 5), (3, 6), (3, 7)], ids=IDS[1:])
def test_the_file_check_catches_a_misspelt_key_at_the_top_and_in_a_transport_block(line, tmp_path):
    fields = file_fields(TESTED[line])
    config = rendered(line, Bootstrap.STATIC, tmp_path)
    config["heartbeat-interva1"] = config.pop("heartbeat-interval")
    config["peer-transport-security"]["client-cert-aut"] = config["peer-transport-security"].pop("client-cert-auth")
    assert unknown_keys(config, fields) == ["heartbeat-interva1", "peer-transport-security.client-cert-aut"]


def test_keys_that_a_line_dropped_are_caught_by_the_file_check():
    # 3.6 renamed the experimental keys to feature gates; 3.7 removed the old names.
    assert "experimental-initial-corrupt-check" in file_fields(TESTED[(3, 5)])
    assert "feature-gates" in file_fields(TESTED[(3, 6)])
    assert "experimental-initial-corrupt-check" not in file_fields(TESTED[(3, 7)])


def test_rendered_members_use_only_keys_their_line_knows(rendered_members):
    for name, user_data in rendered_members.items():
        version = EtcdVersion(*map(int, VARIANTS[name.split("/")[0]].get("version", "3.6.14").split(".")))
        config = yaml.safe_load(written_file(user_data, "/etc/etcd/etcd.yaml"))
        result = etcd_accepts(BINARIES[version.line], as_flags(config))
        assert result.returncode == 0, (name, result.stderr[:300])
        if version.line in TESTED:
            assert unknown_keys(config, file_fields(TESTED[version.line])) == [], name


# --- a real cluster from the rendered files ---------------------------------------------------

@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_a_three_member_tls_cluster_of_each_line_starts_answers_health_and_restores_a_snapshot(
        line, tmp_path, monkeypatch):
    monkeypatch.setenv("ETCD_BIN", str(BINARIES[line]))
    cfg = config.load({"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static"}, "test")
    box = sandbox.up(tmp_path / "cluster", "test", cfg, Bootstrap.STATIC, report=lambda _: None, timeout_s=60)
    try:
        version = str(sandbox.etcd_version(BINARIES[line]))
        assert box.version == version
        gateway = box.gateway()
        first, last = box.members[0].ip, box.members[2].ip
        assert {gateway.status(m.ip)["version"] for m in box.members} == {version}
        assert all(health(m.ip).status_code == 200 for m in box.members)
        with local_session() as session, pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://{first}:2379/health", verify=str(box.client.ca), timeout=5)
        assert_peers_pinned(box)

        written = {f"k/{i}": f"value {i}" for i in range(10)}
        for key, value in written.items():
            gateway.put(first, key, value)
        assert gateway.get(last, "k/9") == "value 9"
        backup_script = Path(box.paths(box.members[0]).script("etcd-backup")).read_text()
        tool = "etcdctl" if line == (3, 4) else "etcdutl"
        assert f"readonly SNAPSHOT_TOOL={tool}" in backup_script
        transport = SandboxTransport(box)
        snapshot = operations.backup(transport, report=lambda _: None).removeprefix("file://")
        status = subprocess.run([str(box.directory / "bin" / tool), "snapshot", "status", snapshot,
                                 "--write-out", "json"], capture_output=True, text=True, check=True, timeout=30)
        assert json.loads(status.stdout)["totalKey"] >= len(written)
        gateway.put(first, "k/after", "gone after the restore")
        gateway.close()

        operations.restore(transport, Path(snapshot).name, report=lambda _: None)
        gateway = box.gateway()
        assert {key: gateway.get(last, key) for key in written} == written
        assert gateway.get(last, "k/after") is None
        gateway.close()
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

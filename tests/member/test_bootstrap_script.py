"""The bootstrap script run by bash, with stub commands first on PATH standing in for the instance."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from etcd_stack.config import Bootstrap, EtcdVersion
from etcd_stack.member import rendering
from etcd_stack.member.rendering import BootstrapSettings, ClusterSettings
from etcd_stack.sandbox.local import local_members, local_paths

VERSION = EtcdVersion(3, 6, 14)
VOLUME_ID = "vol-0123456789abcdef0"
KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIStub\n-----END EC PRIVATE KEY-----"
CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBstub\n-----END CERTIFICATE-----"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBcastub\n-----END CERTIFICATE-----"

# Each stub appends its name and arguments to $STUB_LOG and keeps its state in files under $STUB_STATE.
STUBS = {
    "curl": """
out=""; while [ $# -gt 0 ]; do case "$1" in --output) out=$2; shift 2;; *) shift;; esac; done
n=$(cat "$STUB_STATE/curl-failures" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then
  echo $((n - 1)) > "$STUB_STATE/curl-failures"; echo "curl: (6) Could not resolve host" >&2; exit 6
fi
cp "$STUB_STATE/etcd.tar.gz" "$out"
""",
    "aws": """
name=""; while [ $# -gt 0 ]; do case "$1" in --name) name=$2; shift 2;; *) shift;; esac; done
case "$name" in
  */key) cat "$STUB_STATE/key.pem";; */cert) cat "$STUB_STATE/cert.pem";; */ca-bundle) cat "$STUB_STATE/ca.pem";;
  *) exit 254;;
esac
""",
    "blkid": """
for a in "$@"; do last=$a; done
if [ ! -f "$STUB_STATE/fs-type" ]; then exit 2; fi
case "$*" in *TYPE*) cat "$STUB_STATE/fs-type";; *UUID*) echo 4f1c7e52-8d0a-4f4e-9f3b-2a1d6c0e9b77;; esac
""",
    "mkfs.xfs": 'echo xfs > "$STUB_STATE/fs-type"',
    "mountpoint": '[ -f "$STUB_STATE/mounted" ]',
    "mount": 'touch "$STUB_STATE/mounted"',
    "id": '[ -f "$STUB_STATE/user" ]',
    "useradd": 'touch "$STUB_STATE/user"',
    "chown": "true",
    "systemctl": "true",
    "sleep": "true",
}


def fake_release() -> bytes:
    """A release tarball whose etcd answers --version like the real one."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for tool in ("etcd", "etcdctl", "etcdutl"):
            body = f"#!/bin/sh\necho 'etcd Version: {VERSION}'\n".encode() if tool == "etcd" else b"#!/bin/sh\n"
            info = tarfile.TarInfo(f"etcd-v{VERSION}-linux-amd64/{tool}")
            info.size, info.mode = len(body), 0o755
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@dataclass
class Instance:
    root: Path
    script: Path
    state: Path
    log: Path
    paths: rendering.Paths

    def run(self) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.root / 'stubs'}:{os.environ['PATH']}", "STUB_LOG": str(self.log),
               "STUB_STATE": str(self.state), "ETCD_BOOTSTRAP_ATTEMPTS": "4", "ETCD_BOOTSTRAP_DELAY": "1"}
        return subprocess.run(["bash", str(self.script)], capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    def calls(self, name: str) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.split(" ", 1)[0] == name]

    def snapshot(self) -> dict[str, bytes]:
        """Every file the script may write, with its content and mode."""
        found = {}
        for top in (self.paths.bin_dir, self.paths.pki_dir, self.paths.data_mount):
            for path in sorted(Path(top).rglob("*")):
                if path.is_file():
                    found[str(path)] = path.read_bytes() + oct(path.stat().st_mode).encode()
        found[self.paths.fstab] = Path(self.paths.fstab).read_bytes()
        return found


@pytest.fixture
def instance(tmp_path) -> callable:
    def make(sha256: str | None = None, curl_failures: int = 0, fs_type: str | None = None) -> Instance:
        release = fake_release()
        state = tmp_path / "state"
        state.mkdir()
        (state / "etcd.tar.gz").write_bytes(release)
        (state / "key.pem").write_text(KEY_PEM)
        (state / "cert.pem").write_text(CERT_PEM)
        (state / "ca.pem").write_text(CA_PEM)
        (state / "curl-failures").write_text(str(curl_failures))
        if fs_type:
            (state / "fs-type").write_text(fs_type)
        log = tmp_path / "calls.log"
        stubs = tmp_path / "stubs"
        stubs.mkdir()
        for name, body in STUBS.items():
            stub = stubs / name
            stub.write_text(f'#!/bin/bash\necho "{name} $*" >> "$STUB_LOG"\n{body.strip()}\n')
            stub.chmod(stub.stat().st_mode | stat.S_IEXEC)

        member = local_members(1)[0]
        paths = local_paths(tmp_path / "host", member)
        Path(paths.bin_dir).mkdir(parents=True)
        # The join script has tests of its own (sandbox); here it only records that it was asked.
        join = Path(paths.script("etcd-join"))
        join.parent.mkdir(parents=True, exist_ok=True)
        join.write_text('#!/bin/bash\necho "etcd-join $*" >> "$STUB_LOG"\n')
        join.chmod(0o755)
        Path(paths.fstab).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.fstab).write_text("# /etc/fstab\n")
        device = Path(paths.devices) / "disk/by-id" / f"nvme-Amazon_Elastic_Block_Store_{VOLUME_ID.replace('-', '')}"
        device.parent.mkdir(parents=True)
        device.write_text("")
        cluster = ClusterSettings(name="etcd", token="etcd-test", version=VERSION, bootstrap=Bootstrap.STATIC,
                                  members=(member,), heartbeat_ms=100, election_ms=1000, quota_backend_bytes=1)
        boot = BootstrapSettings(
            sha256={"amd64": sha256 or hashlib.sha256(release).hexdigest()}, region="eu-west-2",
            key_parameter="/etcd/etcd-0/tls/key", cert_parameter="/etcd/etcd-0/tls/cert",
            ca_parameter="/etcd/tls/ca-bundle", volume_id=VOLUME_ID,
        )
        script = tmp_path / "etcd-bootstrap"
        script.write_text(rendering.bootstrap_script(cluster, member, paths, boot))
        return Instance(tmp_path, script, state, log, paths)

    return make


def test_a_first_boot_installs_fetches_formats_mounts_and_starts(instance):
    host = instance()
    result = host.run()
    assert result.returncode == 0, result.stderr
    paths = host.paths
    assert subprocess.run([f"{paths.bin_dir}/etcd", "--version"], capture_output=True, text=True).stdout.strip() == (
        f"etcd Version: {VERSION}")
    assert Path(paths.key_file).read_text() == KEY_PEM + "\n"
    assert oct(Path(paths.key_file).stat().st_mode & 0o777) == "0o600"
    assert Path(paths.cert_file).read_text() == CERT_PEM + "\n"
    assert Path(paths.ca_file).read_text() == CA_PEM + "\n"
    assert len(host.calls("mkfs.xfs")) == 1
    fstab = Path(paths.fstab).read_text()
    assert f"UUID=4f1c7e52-8d0a-4f4e-9f3b-2a1d6c0e9b77 {paths.data_mount} xfs defaults,noatime,nofail 0 2" in fstab
    assert host.calls("mount") == [f"mount {paths.data_mount}"]
    assert oct(Path(paths.data_dir).stat().st_mode & 0o777) == "0o700"
    assert host.calls("systemctl") == ["systemctl daemon-reload",
                                       "systemctl enable etcd.service etcd-backup.timer etcd-metrics.timer",
                                       "systemctl start --no-block etcd.service",
                                       "systemctl start etcd-backup.timer etcd-metrics.timer"]
    assert host.calls("etcd-join") == ["etcd-join prepare", "etcd-join promote"]
    calls = host.log.read_text().splitlines()
    # The member rejoins (if its data was lost) before etcd starts, and is promoted after.
    assert calls.index("etcd-join prepare") < calls.index("systemctl start --no-block etcd.service") < calls.index(
        "etcd-join promote")
    assert any(call.startswith("aws ssm get-parameter --region eu-west-2 --name /etcd/etcd-0/tls/key --with-decryption")
               for call in host.calls("aws"))


def test_a_checksum_mismatch_aborts_before_anything_is_installed_or_started(instance):
    host = instance(sha256="0" * 64)
    result = host.run()
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr
    assert not Path(host.paths.bin_dir, "etcd").exists()
    assert host.calls("systemctl") == [] and host.calls("mkfs.xfs") == []


def test_a_failing_download_is_retried_with_backoff(instance):
    host = instance(curl_failures=2)
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert len(host.calls("curl")) == 3
    assert host.calls("sleep") == ["sleep 1", "sleep 2"]
    assert "attempt 1 of 4 failed: curl" in result.stderr


def test_a_download_that_never_works_gives_up(instance):
    host = instance(curl_failures=10)
    result = host.run()
    assert result.returncode != 0
    assert "giving up after 4 attempts: curl" in result.stderr
    assert host.calls("systemctl") == []


def test_a_formatted_volume_is_never_formatted(instance):
    host = instance(fs_type="xfs")
    assert host.run().returncode == 0
    assert host.calls("mkfs.xfs") == []
    assert host.calls("mount")


def test_a_volume_with_a_foreign_file_system_is_left_alone(instance):
    host = instance(fs_type="ext4")
    result = host.run()
    assert result.returncode != 0
    assert "holds ext4, not xfs: leaving it alone" in result.stderr
    assert host.calls("mkfs.xfs") == [] and host.calls("systemctl") == []


def test_a_second_run_changes_nothing(instance):
    host = instance()
    assert host.run().returncode == 0
    before = host.snapshot()
    host.log.unlink()
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert host.snapshot() == before
    assert host.calls("curl") == [] and host.calls("mkfs.xfs") == [] and host.calls("mount") == []
    assert host.calls("useradd") == []
    assert "etcd 3.6.14 is installed" in result.stderr
    assert "wrote" not in result.stderr


def run_refresh(host: Instance) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(host.script), "refresh-tls"], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{host.root / 'stubs'}:{os.environ['PATH']}", "STUB_LOG": str(host.log),
                               "STUB_STATE": str(host.state)}, check=False)


def test_refresh_tls_fetches_again_and_restarts_etcd_only_on_a_change(instance):
    host = instance()
    assert host.run().returncode == 0
    host.log.unlink()
    result = run_refresh(host)
    assert result.returncode == 0, result.stderr
    assert len(host.calls("aws")) == 3
    assert host.calls("systemctl") == []  # nothing changed: etcd keeps running
    assert "wrote" not in result.stderr

    (host.state / "cert.pem").write_text(CERT_PEM.replace("stub", "renewed"))
    (host.state / "ca.pem").write_text(CA_PEM + "\n" + CERT_PEM.replace("stub", "newca"))
    host.log.unlink()
    result = run_refresh(host)
    assert result.returncode == 0, result.stderr
    assert "renewed" in Path(host.paths.cert_file).read_text()
    assert Path(host.paths.ca_file).read_text().count("BEGIN CERTIFICATE") == 2
    assert host.calls("systemctl") == ["systemctl restart etcd.service"]
    assert host.calls("mkfs.xfs") == [] and host.calls("curl") == []

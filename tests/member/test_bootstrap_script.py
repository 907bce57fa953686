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
from etcd_stack.member import certificates, rendering
from etcd_stack.member.rendering import BootstrapSettings, ClusterSettings
from etcd_stack.sandbox.local import local_members, local_paths

VERSION = EtcdVersion(3, 6, 14)
VOLUME_ID = "vol-0123456789abcdef0"


def _ca(seed: str) -> tuple[object, object]:
    key = certificates.private_key(seed)
    return key, certificates.self_signed_ca(key, f"{seed} CA", certificates.start_of_year())


def _leaf(seed: str, ca: tuple[object, object]) -> tuple[str, str]:
    """A member key and its certificate from `ca`, as the PEM text SSM holds (no trailing newline)."""
    key = certificates.private_key(seed)
    profile = certificates.member_profile("etcd-0", "etcd-0.etcd.internal", "10.0.0.10", "client.etcd.internal")
    cert = certificates.issue(profile, key, *ca, certificates.start_of_year())
    return certificates.key_pem(key).strip(), certificates.cert_pem(cert).strip()


CLUSTER_CA = _ca("etcd")
NEXT_CA = _ca("etcd-next")
FOREIGN_CA = _ca("someone-else")
KEY_PEM, CERT_PEM = _leaf("etcd-0", CLUSTER_CA)
CA_PEM = certificates.cert_pem(CLUSTER_CA[1]).strip()

# Each stub appends its name and arguments to $STUB_LOG and keeps its state in files under $STUB_STATE.
STUBS = {
    "aws": """
if [ "$1" = s3 ] && [ "$2" = cp ]; then
  for a in "$@"; do last=$a; done; for a in "$@"; do case "$a" in s3://*) src=$a;; esac; done
  n=$(cat "$STUB_STATE/s3-failures" 2>/dev/null || echo 0)
  if [ "$n" -gt 0 ]; then
    echo $((n - 1)) > "$STUB_STATE/s3-failures"; echo "fatal error: Could not connect to the endpoint URL" >&2; exit 1
  fi
  [ "$src" = "$(cat "$STUB_STATE/release-uri")" ] || { echo "fatal error: 404 $src" >&2; exit 1; }
  cp "$STUB_STATE/etcd.tar.gz" "$last"; exit 0
fi
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
    "xfs_growfs": 'echo grown >> "$STUB_STATE/grown"',
    "id": '[ -f "$STUB_STATE/user" ]',
    "useradd": 'touch "$STUB_STATE/user"',
    "chown": "true",
    "systemctl": "true",
    "sleep": "true",
}


RELEASE_BUCKET, RELEASE_KEY = "etcd-backup-0a1b2c", "_releases/etcd-v3.6.14-linux-amd64.tar.gz"
# A real etcd prints more after its version line; enough that a reader quitting at the first line kills it.
CHATTER = "".join(f"echo 'Git SHA: line {n} {'x' * 60}'\n" for n in range(2000))


def fake_release() -> bytes:
    """A release tarball whose etcd answers --version like the real one, then writes many lines more."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for tool in ("etcd", "etcdctl", "etcdutl"):
            body = (f"#!/bin/sh\necho 'etcd Version: {VERSION}'\n{CHATTER}".encode() if tool == "etcd"
                    else b"#!/bin/sh\n")
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

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.root / 'stubs'}:{os.environ['PATH']}", "STUB_LOG": str(self.log),
                "STUB_STATE": str(self.state), "ETCD_BOOTSTRAP_ATTEMPTS": "4", "ETCD_BOOTSTRAP_DELAY": "1"}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), *args], capture_output=True, text=True, env=self.env(),
                              timeout=60, check=False)

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
    def make(sha256: str | None = None, s3_failures: int = 0, fs_type: str | None = None) -> Instance:
        release = fake_release()
        state = tmp_path / "state"
        state.mkdir()
        (state / "etcd.tar.gz").write_bytes(release)
        (state / "key.pem").write_text(KEY_PEM)
        (state / "cert.pem").write_text(CERT_PEM)
        (state / "ca.pem").write_text(CA_PEM)
        (state / "s3-failures").write_text(str(s3_failures))
        (state / "release-uri").write_text(f"s3://{RELEASE_BUCKET}/{RELEASE_KEY}")
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
            ca_parameter="/etcd/tls/ca-bundle", volume_id=VOLUME_ID, release_bucket=RELEASE_BUCKET,
            release_key=RELEASE_KEY,
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
    printed = subprocess.run([f"{paths.bin_dir}/etcd", "--version"], capture_output=True, text=True).stdout
    assert printed.splitlines()[0] == f"etcd Version: {VERSION}"
    assert Path(paths.key_file).read_text() == KEY_PEM + "\n"
    assert oct(Path(paths.key_file).stat().st_mode & 0o777) == "0o600"
    assert Path(paths.cert_file).read_text() == CERT_PEM + "\n"
    assert Path(paths.ca_file).read_text() == CA_PEM + "\n"
    assert len(host.calls("mkfs.xfs")) == 1
    fstab = Path(paths.fstab).read_text()
    assert f"UUID=4f1c7e52-8d0a-4f4e-9f3b-2a1d6c0e9b77 {paths.data_mount} xfs defaults,noatime,nofail 0 2" in fstab
    assert host.calls("mount") == [f"mount {paths.data_mount}"]
    assert oct(Path(paths.data_dir).stat().st_mode & 0o777) == "0o700"
    assert host.calls("xfs_growfs") == [f"xfs_growfs -d {paths.data_mount}"]
    assert host.calls("systemctl") == ["systemctl daemon-reload",
                                       "systemctl enable etcd.service etcd-backup.timer etcd-grow.timer "
                                       "etcd-metrics.timer etcd-defrag.timer",
                                       "systemctl start --no-block etcd.service",
                                       "systemctl start etcd-backup.timer etcd-grow.timer etcd-metrics.timer "
                                       "etcd-defrag.timer"]
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


def s3_copies(host: Instance) -> list[str]:
    return [call for call in host.calls("aws") if call.startswith("aws s3 cp")]


def test_etcd_comes_from_the_stacks_bucket_not_the_internet(instance):
    host = instance()
    result = host.run()
    assert result.returncode == 0, result.stderr
    copies = s3_copies(host)
    assert len(copies) == 1
    assert copies[0].startswith(f"aws s3 cp --region eu-west-2 --only-show-errors s3://{RELEASE_BUCKET}/{RELEASE_KEY} ")
    assert "curl" not in host.script.read_text() and "github" not in host.script.read_text()


def test_a_failing_download_is_retried_with_backoff(instance):
    host = instance(s3_failures=2)
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert len(s3_copies(host)) == 3
    assert host.calls("sleep") == ["sleep 1", "sleep 2"]
    assert "attempt 1 of 4 failed: aws" in result.stderr


def test_a_download_that_never_works_gives_up(instance):
    host = instance(s3_failures=10)
    result = host.run()
    assert result.returncode != 0
    assert "giving up after 4 attempts: aws" in result.stderr
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
    assert s3_copies(host) == [] and host.calls("mkfs.xfs") == [] and host.calls("mount") == []
    assert host.calls("useradd") == []
    assert "etcd 3.6.14 is installed" in result.stderr
    assert "wrote" not in result.stderr


def test_an_installed_etcd_is_not_installed_again_however_much_it_prints(instance):
    # The stub etcd prints 2000 lines after its version: a pipe into `grep -q` would kill it with SIGPIPE.
    host = instance()
    assert host.run().returncode == 0
    for _ in range(5):
        host.log.unlink()
        result = host.run()
        assert result.returncode == 0, result.stderr
        assert s3_copies(host) == [], result.stderr
        assert "etcd 3.6.14 is installed" in result.stderr


def test_another_installed_version_is_replaced(instance):
    host = instance()
    etcd = Path(host.paths.bin_dir, "etcd")
    etcd.parent.mkdir(parents=True, exist_ok=True)
    etcd.write_text("#!/bin/sh\necho 'etcd Version: 3.6.13'\n")
    etcd.chmod(0o755)
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert len(s3_copies(host)) == 1
    assert "installed etcd 3.6.14 (amd64)" in result.stderr


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

    # A CA move: both CAs trusted, the certificate (and a new key) from the next CA.
    key, cert = _leaf("etcd-0-next", NEXT_CA)
    (host.state / "key.pem").write_text(key)
    (host.state / "cert.pem").write_text(cert)
    (host.state / "ca.pem").write_text(CA_PEM + "\n" + certificates.cert_pem(NEXT_CA[1]).strip())
    host.log.unlink()
    result = run_refresh(host)
    assert result.returncode == 0, result.stderr
    assert Path(host.paths.cert_file).read_text() == cert + "\n"
    assert Path(host.paths.key_file).read_text() == key + "\n"
    assert Path(host.paths.ca_file).read_text().count("BEGIN CERTIFICATE") == 2
    assert host.calls("systemctl") == ["systemctl restart etcd.service"]
    assert host.calls("mkfs.xfs") == [] and s3_copies(host) == []


def test_the_file_system_grows_to_a_grown_volume_while_etcd_runs(instance):
    host = instance()
    assert host.run().returncode == 0
    host.log.unlink()
    result = host.run("grow-volume")
    assert result.returncode == 0, result.stderr
    assert host.calls("xfs_growfs") == [f"xfs_growfs -d {host.paths.data_mount}"]
    assert host.calls("systemctl") == []  # etcd is not touched


def test_growing_refuses_a_data_volume_that_is_not_mounted(instance):
    host = instance()
    result = host.run("grow-volume")
    assert result.returncode == 1
    assert "is not mounted: nothing to grow" in result.stderr
    assert host.calls("xfs_growfs") == []
def refused(host: Instance, **parameters: str) -> subprocess.CompletedProcess:
    """Puts these values in the stub's parameters, runs refresh-tls, and checks nothing was replaced."""
    before = host.snapshot()
    for name, value in parameters.items():
        (host.state / f"{name}.pem").write_text(value)
    host.log.unlink()
    result = run_refresh(host)
    assert result.returncode != 0
    assert "refusing the fetched TLS material" in result.stderr
    assert host.snapshot() == before
    assert host.calls("systemctl") == []
    return result


def test_a_certificate_from_a_foreign_ca_is_refused_and_the_files_stay(instance):
    host = instance()
    assert host.run().returncode == 0
    key, cert = _leaf("etcd-0-forged", FOREIGN_CA)
    result = refused(host, key=key, cert=cert)
    assert "does not chain to the CAs in /etcd/tls/ca-bundle" in result.stderr


def test_a_key_that_does_not_match_the_certificate_is_refused_and_the_files_stay(instance):
    host = instance()
    assert host.run().returncode == 0
    other_key, _ = _leaf("etcd-0-other", CLUSTER_CA)
    result = refused(host, key=other_key)
    assert "the key in /etcd/etcd-0/tls/key does not belong to the certificate" in result.stderr


def test_a_bundle_swapped_for_a_foreign_ca_is_refused_and_the_files_stay(instance):
    host = instance()
    assert host.run().returncode == 0
    result = refused(host, ca=certificates.cert_pem(FOREIGN_CA[1]).strip())
    assert "does not chain" in result.stderr


def test_a_first_boot_with_mismatched_material_writes_nothing_and_starts_nothing(instance):
    host = instance()
    other_key, _ = _leaf("etcd-0-other", CLUSTER_CA)
    (host.state / "key.pem").write_text(other_key)
    result = host.run()
    assert result.returncode != 0
    assert not Path(host.paths.key_file).exists() and not Path(host.paths.cert_file).exists()
    assert host.calls("systemctl") == [] and host.calls("mkfs.xfs") == []

"""Getting etcd of an exact version: from the release tarball (served here by a local HTTP server on
127.0.0.1 whose tarball's checksum the test controls) when Go is absent, or from etcd's Go modules."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from etcd_stack import config, releases
from etcd_stack.config import Bootstrap
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox import cluster as sandbox

DEFAULT = binaries.default_version()
NEWEST_3_5 = releases.newest((3, 5))


def release_tarball(version: str, tools_from: Path) -> bytes:
    """A tarball laid out as etcd's releases are, holding the given directory's tools."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for tool in binaries.TOOLS:
            archive.add(tools_from / tool, arcname=f"etcd-v{version}-linux-amd64/{tool}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release_server(tmp_path_factory):
    """Serves `<root>/v<version>/<file>` on 127.0.0.1 and counts the requests."""
    root = tmp_path_factory.mktemp("releases")
    requests_seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            requests_seen.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}", requests_seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def published(release_server, monkeypatch):
    """Publishes a tarball as `version`'s release and records `sha256` as its sum; returns the URL."""
    root, base, _ = release_server
    monkeypatch.setattr(releases, "DOWNLOAD_URL", base + "/v{version}/etcd-v{version}-linux-{arch}.tar.gz")
    monkeypatch.setattr(binaries, "machine_arch", lambda: "amd64")

    def publish(version: str, content: bytes, sha256: str | None = None) -> str:
        path = root / f"v{version}" / f"etcd-v{version}-linux-amd64.tar.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        monkeypatch.setitem(releases.SHA256, version, {"amd64": sha256 or hashlib.sha256(content).hexdigest()})
        return releases.download_url(version, "amd64")

    return publish


def built(version: str) -> Path:
    home = binaries.installed(version)
    assert home, f"`make test` installs etcd {version} (python -m etcd_stack.sandbox.binaries)"
    return home


def test_without_go_the_release_is_fetched_verified_unpacked_and_cached(published, release_server, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(binaries, "go", lambda: None)
    published(DEFAULT, release_tarball(DEFAULT, built(DEFAULT)))
    seen = release_server[2]
    before = len(seen)
    progress: list[str] = []
    home = binaries.ensure(DEFAULT, report=progress.append, cache=tmp_path)
    assert home == tmp_path / DEFAULT and binaries.installed(DEFAULT, tmp_path) == home
    assert sorted(p.name for p in home.iterdir()) == ["etcd", "etcdctl", "etcdutl"]
    assert len(seen) == before + 1
    assert any("SHA-256 matches the published sum" in line for line in progress)
    # Installed once: asking again downloads nothing.
    assert binaries.ensure(DEFAULT, report=progress.append, cache=tmp_path) == home
    assert len(seen) == before + 1


def test_a_tarball_whose_checksum_differs_is_refused_before_anything_is_unpacked(published, tmp_path):
    content = release_tarball(DEFAULT, built(DEFAULT))
    url = published(DEFAULT, content, sha256="0" * 64)
    with pytest.raises(binaries.InstallError) as refused:
        binaries.ensure(DEFAULT, report=lambda _: None, cache=tmp_path, method="release")
    assert str(refused.value) == (f"etcd {DEFAULT}: {url} has SHA-256 {hashlib.sha256(content).hexdigest()}, not the "
                                  f"published {'0' * 64}; refused, nothing unpacked")
    assert list(tmp_path.iterdir()) == []


def test_a_release_whose_tools_report_another_version_is_refused(published, tmp_path):
    # A correctly summed tarball that holds the wrong etcd: the version check is what catches it.
    published(DEFAULT, release_tarball(DEFAULT, built(NEWEST_3_5)))
    with pytest.raises(binaries.InstallError, match=rf"^etcd reports {re.escape(NEWEST_3_5)}, not the "
                                                    rf"{re.escape(DEFAULT)} asked for$"):
        binaries.ensure(DEFAULT, report=lambda _: None, cache=tmp_path, method="release")
    assert list(tmp_path.iterdir()) == []


def test_a_version_without_a_published_sum_is_refused_without_a_download(release_server, tmp_path, monkeypatch):
    seen = release_server[2]
    before = len(seen)
    monkeypatch.setattr(binaries, "machine_arch", lambda: "amd64")
    with pytest.raises(binaries.InstallError, match=r"^etcd 3\.6\.99: no published SHA-256 for linux-amd64 in "
                                                    r"etcd_stack/releases\.py; known: .*3\.6\.14"):
        binaries.ensure("3.6.99", report=lambda _: None, cache=tmp_path, method="release")
    assert len(seen) == before and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", binaries.tested_versions())
def test_the_go_build_pinned_every_etcd_module_to_exactly_the_version_asked_for(version):
    go_mod = (built(version) / "go.mod").read_text()
    required = dict(re.findall(r"^\s+(go\.etcd\.io/etcd/[\w/]+) (v\S+)", go_mod, re.M))
    assert {module: required.get(module) for module in binaries.MAIN_PACKAGES.values()} == {
        module: f"v{version}" for module in binaries.MAIN_PACKAGES.values()}
    # The Go command recorded (and checked against the checksum database) every module that went in.
    assert f"go.etcd.io/etcd/server/v3 v{version} h1:" in (built(version) / "go.sum").read_text()
    binaries.check_versions(built(version), version, binaries.TOOLS)


def test_an_installed_version_is_not_built_again(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(binaries, "build", no_build)
    monkeypatch.setattr(binaries, "fetch_release", no_build)
    assert binaries.ensure(DEFAULT, report=lambda _: None) == built(DEFAULT)


def test_the_tests_run_the_default_version_and_the_newest_3_5_and_3_7():
    assert binaries.tested_versions() == [NEWEST_3_5, DEFAULT, releases.newest((3, 7))]
    assert NEWEST_3_5 == "3.5.33" and releases.newest((3, 7)) == "3.7.1"


def test_the_sandbox_runs_the_version_its_stack_pins(tmp_path, monkeypatch):
    monkeypatch.delenv("ETCD_BIN", raising=False)
    cfg = config.load({"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static",
                       "etcd:clusterSize": "1", "etcd:version": NEWEST_3_5}, "test")
    said: list[str] = []
    box = sandbox.up(tmp_path / "pinned", "test", cfg, Bootstrap.STATIC, report=said.append, timeout_s=60)
    try:
        assert box.version == NEWEST_3_5 and Path(box.binary) == built(NEWEST_3_5) / "etcd"
        assert said[0] == f"etcd {NEWEST_3_5} from {box.binary} (the version the test stack pins on AWS)"
        assert (box.directory / "bin" / "etcdutl").resolve() == built(NEWEST_3_5) / "etcdutl"
    finally:
        sandbox.down(box.directory)


def _fake_install(cache, version: str, payload: bytes = b"binary") -> None:
    home = cache / version
    home.mkdir(parents=True)
    for tool in binaries.TOOLS:
        (home / tool).write_bytes(payload + tool.encode())
        (home / tool).chmod(0o755)


def test_a_packed_release_is_laid_out_like_the_official_one_and_packs_to_the_same_bytes(tmp_path):
    import tarfile

    _fake_install(tmp_path, "3.6.16")
    first = binaries.release_tarball("3.6.16", cache=tmp_path, arch="amd64").read_bytes()
    (tmp_path / "3.6.16" / "etcd").touch()  # a newer mtime on disk changes nothing
    second = binaries.release_tarball("3.6.16", cache=tmp_path, arch="amd64")
    assert second.read_bytes() == first
    assert second.name == "etcd-v3.6.16-linux-amd64.tar.gz"
    assert binaries.sha256_of(second) == hashlib.sha256(first).hexdigest()
    with tarfile.open(second) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == ["etcd-v3.6.16-linux-amd64", *(f"etcd-v3.6.16-linux-amd64/{t}"
                                                                          for t in ("etcd", "etcdctl", "etcdutl"))]
        assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, binaries.PACKED_MTIME)}
        assert archive.extractfile("etcd-v3.6.16-linux-amd64/etcd").read() == b"binaryetcd"


def test_other_binaries_pack_to_another_sum(tmp_path):
    _fake_install(tmp_path / "a", "3.6.16")
    _fake_install(tmp_path / "b", "3.6.16", payload=b"other")
    assert binaries.sha256_of(binaries.release_tarball("3.6.16", cache=tmp_path / "a", arch="amd64")) != \
        binaries.sha256_of(binaries.release_tarball("3.6.16", cache=tmp_path / "b", arch="amd64"))


def test_the_machine_version_is_built_by_default():
    assert binaries.MACHINE_VERSION in binaries.built_versions()
    assert binaries.MACHINE_VERSION not in binaries.releases.SHA256

"""The machines' root file system: its cache key, its cache, atomic builds, and what is inside the real one."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from etcd_stack.sandbox.machines import rootfs


def test_recipe_digest_follows_every_field_but_not_package_order() -> None:
    base = rootfs.RECIPE
    changed = [
        dataclasses.replace(base, packages=(*base.packages, "jq")),
        dataclasses.replace(base, awscli="1.0.0"),
        dataclasses.replace(base, revision=base.revision + 1),
        dataclasses.replace(base, locale="C.UTF-8"),
        dataclasses.replace(base, suite="trixie"),
    ]
    digests = {recipe.digest() for recipe in changed}
    assert len(digests) == len(changed) and base.digest() not in digests
    assert dataclasses.replace(base, packages=tuple(reversed(base.packages))).digest() == base.digest()
    assert base.digest() in rootfs.archive_path(base, Path("/cache")).name


def test_a_cached_tarball_is_reused_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = rootfs.archive_path(rootfs.RECIPE, tmp_path)
    archive.write_bytes(b"built earlier")

    def must_not_build(*args: object) -> Path:
        raise AssertionError("ensure() rebuilt a cached root file system")

    monkeypatch.setattr(rootfs, "_build", must_not_build)
    assert rootfs.ensure(report=lambda line: None, cache=tmp_path) == archive
    assert archive.read_bytes() == b"built earlier"


def test_a_build_replaces_other_recipes_and_stale_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    older = rootfs.archive_path(dataclasses.replace(rootfs.RECIPE, revision=0), tmp_path)
    older.write_bytes(b"old recipe")
    stale = tmp_path / ".build-killed"
    (stale / "root").mkdir(parents=True)
    calls: list[Path] = []

    def build(recipe: rootfs.Recipe, staging: Path, report: rootfs.Report) -> Path:
        calls.append(staging)
        made = staging / "rootfs.tar.zst"
        made.write_bytes(b"new recipe")
        return made

    monkeypatch.setattr(rootfs, "_build", build)
    archive = rootfs.ensure(report=lambda line: None, cache=tmp_path)
    assert len(calls) == 1 and archive.read_bytes() == b"new recipe"
    assert archive == rootfs.archive_path(rootfs.RECIPE, tmp_path)
    assert not older.exists() and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".lock", archive.name])


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, rootfs.BuildError])
def test_an_interrupted_build_leaves_no_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                interruption: type[BaseException]) -> None:
    def build(recipe: rootfs.Recipe, staging: Path, report: rootfs.Report) -> Path:
        (staging / "root" / "etc").mkdir(parents=True)
        (staging / "rootfs.tar.zst").write_bytes(b"half a tarball")
        raise interruption("stopped while packing")

    monkeypatch.setattr(rootfs, "_build", build)
    with pytest.raises(interruption):
        rootfs.ensure(report=lambda line: None, cache=tmp_path)
    assert rootfs.cached(rootfs.RECIPE, tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert rootfs.mirror(tmp_path) == rootfs.DEFAULT_MIRROR
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert rootfs.mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://listed.example/debian bookworm main contrib\n")
    assert rootfs.mirror(tmp_path) == "http://listed.example/debian"


def _inside(root: Path, command: str) -> str:
    done = subprocess.run(["chroot", str(root), "/bin/sh", "-c", command], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, f"{command!r} inside the root file system: {done.stderr or done.stdout}"
    return done.stdout + done.stderr


def test_the_real_root_file_system_has_what_members_run(tmp_path: Path) -> None:
    """Builds the tarball when the cache lacks it (`make test` builds it first, on the host's network)."""
    root = tmp_path / "root"
    rootfs.unpack(rootfs.ensure(), root)
    assert _inside(root, "systemctl --version").startswith("systemd 252 ")
    assert "cloud-init 22." in _inside(root, "cloud-init --version")
    assert "mkfs.xfs version" in _inside(root, "mkfs.xfs -V")
    assert _inside(root, "aws --version").startswith(f"aws-cli/{rootfs.AWSCLI_VERSION} ")
    programs = " ".join(rootfs.PROGRAMS)
    missing = _inside(root, f'for p in {programs}; do command -v "$p" >/dev/null || echo "$p"; done')
    assert missing.split() == []
    assert "LANG=en_US.UTF-8" in (root / "etc/default/locale").read_text()
    assert "en_US.utf8" in _inside(root, "locale -a")
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "sbin/init").resolve().name == "systemd"
    assert not (root / "usr/sbin/policy-rc.d").exists()
    sudo = (root / "usr/bin/sudo").stat()
    assert sudo.st_uid == 0 and sudo.st_mode & 0o4000, "owners and the setuid bit survive the tarball"

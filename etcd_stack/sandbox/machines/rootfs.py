"""The root file system the test machines (members booted with `systemd-nspawn --boot`) are made from.

Debian bookworm (systemd 252, the major version Amazon Linux 2023 ships) from `debootstrap --variant=minbase`,
with what a member runs: systemd, cloud-init, xfsprogs, the programs the member scripts call, and the AWS CLI
v1 from PyPI in /opt/aws-cli (it stands in for AL2023's CLI v2: the same botocore service models answer the
calls the scripts make). Packages are installed with chroot on the host's network (the package mirror and
PyPI only). The result is cached as one tarball named by a hash of the recipe, so a machine's file system is
an untar away; a build happens in a scratch directory and becomes the tarball by one rename, so an
interrupted build leaves nothing that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

Report = Callable[[str], None]

# Bump when the build steps change in a way the recipe's fields do not show.
REVISION = 1
SUITE = "bookworm"
AWSCLI_VERSION = "1.46.3"
# cloud-init's Debian distro defaults to en_US.UTF-8 (cloudinit/distros/debian.py, Distro.__init__) and runs
# locale-gen/update-locale for it (regenerate_locale, update_locale_conf): both come with `locales`.
LOCALE = "en_US.UTF-8"
PACKAGES = (
    # the machine itself
    "systemd", "systemd-sysv", "dbus", "cloud-init", "locales", "iproute2", "procps", "sudo",
    # the data volume: mkfs.xfs, xfs_growfs; blkid, mountpoint, losetup, flock, mount
    "xfsprogs", "util-linux", "mount",
    # the member scripts: curl, openssl, python3 (etcd-join, etcd-defrag, etcd-metrics), tar/gzip (the etcd
    # release), sha256sum and the rest of coreutils, awk, sed, grep, find, cmp, useradd
    "curl", "ca-certificates", "openssl", "python3", "python3-venv", "tar", "gzip", "coreutils", "mawk",
    "sed", "grep", "findutils", "diffutils", "passwd", "bash",
)
# Every program the member scripts under templates/ call (besides shell builtins and etcd's own tools),
# plus what cloud-init and the machine harness rely on; the tests check each one inside the tarball.
PROGRAMS = (
    "aws", "awk", "blkid", "cat", "chmod", "chown", "cloud-init", "cmp", "cp", "curl", "cut", "date", "dirname",
    "find", "flock", "grep", "gzip", "head", "id", "install", "ip", "ln", "locale-gen", "losetup", "mkdir",
    "mkfs.xfs", "mktemp", "mount", "mountpoint", "mv", "openssl", "ps", "python3", "rm", "sed", "sha256sum",
    "sleep", "sort", "stat", "sudo", "systemctl", "systemd-run", "tar", "timeout", "uname", "update-locale",
    "useradd", "wc", "xfs_growfs",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
COMMAND_TIMEOUT_S = 1800
ARCHIVE_PREFIX = "rootfs-"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what is in the root file system; its digest names the tarball."""

    suite: str
    packages: tuple[str, ...]
    awscli: str
    locale: str
    revision: int

    def digest(self) -> str:
        fields = asdict(self) | {"packages": sorted(self.packages)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


RECIPE = Recipe(suite=SUITE, packages=PACKAGES, awscli=AWSCLI_VERSION, locale=LOCALE, revision=REVISION)


class BuildError(Exception):
    """The root file system could not be built; the message says which step failed and why."""


def cache_dir() -> Path:
    """$ETCD_STACK_MACHINES_CACHE, else build/machines in the project (git-ignored)."""
    explicit = os.environ.get("ETCD_STACK_MACHINES_CACHE")
    if explicit:
        return Path(explicit)
    return Path(__file__).resolve().parents[3] / "build" / "machines"


def _compression() -> tuple[str, str]:
    """(compressor, suffix): zstd when the machine has it (several times faster to unpack), else gzip."""
    return ("zstd", ".tar.zst") if shutil.which("zstd") else ("gzip", ".tar.gz")


def archive_path(recipe: Recipe = RECIPE, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"{ARCHIVE_PREFIX}{recipe.suite}-{recipe.digest()}{_compression()[1]}"


def cached(recipe: Recipe = RECIPE, cache: Path | None = None) -> Path | None:
    """The recipe's tarball in the cache, in either compression, or None."""
    folder = cache or cache_dir()
    for suffix in (".tar.zst", ".tar.gz"):
        found = folder / f"{ARCHIVE_PREFIX}{recipe.suite}-{recipe.digest()}{suffix}"
        if found.is_file():
            return found
    return None


def ensure(report: Report = print, cache: Path | None = None, recipe: Recipe = RECIPE) -> Path:
    """The recipe's tarball, built when the cache lacks it; tarballs of other recipes are removed."""
    folder = cache or cache_dir()
    found = cached(recipe, folder)
    if found:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        found = cached(recipe, folder)
        if found:
            return found
        _remove_stale_builds(folder)
        target = archive_path(recipe, folder)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".build-", dir=folder) as staging:
            built = _build(recipe, Path(staging), report)
            os.replace(built, target)
        _prune(folder, keep=target)
    size_mb = target.stat().st_size / 1e6
    report(f"machine root file system built in {time.monotonic() - started:.0f}s ({size_mb:.0f} MB) -> {target}")
    return target


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a root file system tarball into dest, keeping owners (by number), modes, xattrs and devices."""
    dest.mkdir(parents=True, exist_ok=True)
    compressor = "zstd" if archive.name.endswith(".zst") else "gzip"
    _run(["tar", "--extract", f"--use-compress-program={compressor}", f"--file={archive}",
          f"--directory={dest}", "--numeric-owner", "--same-owner", "--same-permissions",
          "--xattrs", "--xattrs-include=*", "--acls"], "unpacking the root file system")


def mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses on this host (sources.list or sources.list.d), else deb.debian.org."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list")),
             *sorted((sources / "sources.list.d").glob("*.sources"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if SUITE in fields.get("Suites", "").split() and "main" in fields.get("Components", "").split():
                    return fields.get("URIs", "").split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                    return words[1]
    return DEFAULT_MIRROR


# --- building ---------------------------------------------------------------------------------------------

def _build(recipe: Recipe, staging: Path, report: Report) -> Path:
    """Bootstrap, install and configure a root file system in staging; returns the tarball made of it."""
    for tool in ("debootstrap", "chroot", "tar"):
        if not shutil.which(tool):
            raise BuildError(f"building the machine root file system needs {tool}: run scripts/install-test-tools")
    if os.geteuid() != 0:
        raise BuildError("building the machine root file system needs root (debootstrap, chroot)")
    root = staging / "root"
    source = mirror()
    report(f"machine root file system: debootstrap {recipe.suite} from {source}")
    _run(["debootstrap", "--variant=minbase", "--include=ca-certificates", recipe.suite, str(root), source],
         "debootstrap")
    report(f"machine root file system: installing {len(recipe.packages)} packages and awscli {recipe.awscli}")
    _configure(root, recipe)
    compressor, suffix = _compression()
    archive = staging / f"rootfs{suffix}"
    level = ["zstd", "-T0", "-6"] if compressor == "zstd" else ["gzip", "-6"]
    _run(["tar", "--create", f"--use-compress-program={' '.join(level)}", f"--file={archive}",
          f"--directory={root}", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
          "--one-file-system", "."], "packing the root file system")
    return archive


def _configure(root: Path, recipe: Recipe) -> None:
    """Install the packages, the locale and the AWS CLI inside root, then leave it as a first boot expects."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no service starts while the root file system is built\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    # pip inside trusts what the host trusts for PyPI (a host behind a TLS proxy adds its CA to its own
    # bundle); the copy lives in /tmp of the chroot for the build only, the rootfs keeps Debian's bundle.
    host_ca = root / "tmp/host-ca.pem"
    shutil.copyfile(_host_ca_bundle(), host_ca)
    script = "\n".join([
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive LC_ALL=C",
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends " + " ".join(sorted(recipe.packages)),
        f"echo '{recipe.locale} {recipe.locale.split('.')[-1]}' > /etc/locale.gen",
        "locale-gen",
        f"update-locale LANG={recipe.locale}",
        "python3 -m venv /opt/aws-cli",
        "/opt/aws-cli/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --cert /tmp/host-ca.pem "
        f"'awscli=={recipe.awscli}'",
        "ln -sf /opt/aws-cli/bin/aws /usr/local/bin/aws",
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log",
    ])
    proc = root / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)], "mounting /proc for the chroot")
    try:
        # A clean environment: the host's PIP_*/SSL_* settings name paths that do not exist inside.
        _run(["chroot", str(root), "/bin/sh", "-c", script], "installing packages in the chroot",
             env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"})
    finally:
        subprocess.run(["umount", "--lazy", str(proc)], check=False)
    policy.unlink()
    host_ca.unlink()
    # Each machine is a first boot: systemd gives it an ID (nspawn passes one), cloud-init a fresh instance.
    (root / "etc/machine-id").write_text("")
    (root / "etc/resolv.conf").write_text("")
    shutil.rmtree(root / "var/lib/cloud", ignore_errors=True)


def _host_ca_bundle() -> str:
    """The CA bundle the host's pip uses (PIP_CERT, else SSL_CERT_FILE, else Debian's bundle)."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE"):
        if os.environ.get(variable) and Path(os.environ[variable]).is_file():
            return os.environ[variable]
    return "/etc/ssl/certs/ca-certificates.crt"


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as error:
        raise BuildError(f"{what}: no result after {COMMAND_TIMEOUT_S}s") from error
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{tail}")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One build at a time per cache: a second process waits, then finds the tarball the first made."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_builds(folder: Path) -> None:
    """Scratch directories a killed build left behind (only called under the lock, so none is in use)."""
    for stale in folder.glob(".build-*"):
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "--lazy", str(stale / "root/proc")], capture_output=True, check=False)
        shutil.rmtree(stale, ignore_errors=True)


def _prune(folder: Path, keep: Path) -> None:
    for other in folder.glob(f"{ARCHIVE_PREFIX}*.tar.*"):
        if other != keep:
            other.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="cache directory (default: $ETCD_STACK_MACHINES_CACHE "
                                                      "or build/machines)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        archive = ensure(cache=args.cache)
    except BuildError as error:
        print(f"machine root file system: {error}", file=sys.stderr)
        return 1
    print(f"machine root file system ready in {time.monotonic() - started:.1f}s: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

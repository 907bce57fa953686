"""etcd, etcdctl and etcdutl of an exact version for the sandbox, the tests and the benchmarks.

Two ways to get them, chosen by what the machine has:
- with Go: etcd's own main packages, built from its published Go modules by a build module of ours
  that pins every etcd module to the exact version (`go install pkg@version` refuses etcd's modules:
  their go.mod files carry replace directives); the Go command checks each module it downloads
  against the Go checksum database;
- without Go: the official release tarball, checked against the SHA-256 in etcd_stack/releases.py
  before anything in it is unpacked.
Each version lives in its own directory of the cache and is installed only when missing; every tool
must report the version asked for, or the install fails and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from etcd_stack import releases

TOOLS = ("etcd", "etcdctl", "etcdutl")
# The main packages etcd's release builds (server/main.go, etcdctl/main.go, etcdutl/main.go).
MAIN_PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
    "etcdutl": "go.etcd.io/etcd/etcdutl/v3",
}
# etcd's load generator lives in its root module, which only Go can build (no release ships it).
BENCHMARK_PACKAGE = "go.etcd.io/etcd/v3/tools/benchmark"
BUILD_TIMEOUT_S = 3600
# What each tool prints for its version: `etcd --version`, `etcdctl version`, `etcdutl version`.
VERSION_CHECK = {
    "etcd": (["--version"], r"etcd Version: (\S+)"),
    "etcdctl": (["version"], r"etcdctl version: (\S+)"),
    "etcdutl": (["version"], r"etcdutl version: (\S+)"),
}
Report = Callable[[str], None]


class InstallError(Exception):
    """etcd could not be installed; the message says why."""


def cache_root() -> Path:
    """ETCD_STACK_CACHE, else inside the project's virtualenv (git-ignored), else the user's cache."""
    explicit = os.environ.get("ETCD_STACK_CACHE")
    if explicit:
        return Path(explicit)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "etcd"
    return Path.home() / ".cache" / "etcd-stack" / "etcd"


def directory(version: str, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / version


def installed(version: str, cache: Path | None = None) -> Path | None:
    home = directory(version, cache)
    return home if all(os.access(home / tool, os.X_OK) for tool in TOOLS) else None


def go() -> str | None:
    return shutil.which("go")


def ensure(version: str, report: Report = print, cache: Path | None = None, method: str | None = None) -> Path:
    """The directory holding etcd, etcdctl and etcdutl of `version`, installing them when missing."""
    found = installed(version, cache)
    if found:
        return found
    method = method or ("go" if go() else "release")
    started = time.monotonic()
    with _staging(directory(version, cache)) as staging:
        if method == "go":
            build(version, staging, report, [MAIN_PACKAGES[tool] for tool in TOOLS])
        else:
            fetch_release(version, staging, report)
        check_versions(staging, version, TOOLS)
    report(f"etcd {version}: etcd, etcdctl and etcdutl ready in {time.monotonic() - started:.0f}s "
           f"-> {directory(version, cache)}")
    return directory(version, cache)


def ensure_benchmark(version: str, report: Report = print, cache: Path | None = None) -> Path:
    """etcd's `benchmark` tool of `version`, built from etcd's root module (Go needed)."""
    home = directory(version, cache) / "tools"
    binary = home / "benchmark"
    if os.access(binary, os.X_OK):
        return binary
    if not go():
        raise InstallError("etcd's benchmark tool is built from its Go modules: install Go (https://go.dev/dl/)")
    started = time.monotonic()
    with _staging(home) as staging:
        build(version, staging, report, [BENCHMARK_PACKAGE])
    report(f"etcd {version}: benchmark ready in {time.monotonic() - started:.0f}s -> {binary}")
    return binary


class _staging:
    """A scratch directory beside `final` that becomes `final` only when everything in it checked out."""

    def __init__(self, final: Path):
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}-", dir=self.final.parent))
        self.path.chmod(0o755)
        return self.path

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            shutil.rmtree(self.final, ignore_errors=True)
            self.path.rename(self.final)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


# --- from etcd's Go modules -----------------------------------------------------------------

def build(version: str, out: Path, report: Report, packages: list[str]) -> None:
    """Builds `packages` of etcd `version` into `out`; the build module stays there as the record of
    exactly which modules went in (go.mod, go.sum)."""
    modules = sorted({_module_of(package) for package in packages})
    env = _go_env()
    names = [_tool_name(package) for package in packages]
    report(f"etcd {version}: building {', '.join(names)} from {', '.join(f'{m}@v{version}' for m in modules)}"
           f" with {_go_version(env)}")
    _go(["mod", "init", "etcd-stack.local/etcd-build"], out, env, "go mod init")
    # `go get` of the main packages pins their modules at exactly this version and records the checksums.
    _go(["get", *(f"{package}@v{version}" for package in packages)], out, env, "go get", report)
    for module in modules:
        pinned = _go(["list", "-m", "-f", "{{.Version}}", module], out, env, "go list").strip()
        if pinned != f"v{version}":
            raise InstallError(f"{module} resolved to {pinned}, not v{version}")
    report(f"etcd {version}: compiling (minutes on a cold Go cache)")
    _go(["build", "-trimpath", "-o", f"{out}/", *packages], out, env, "go build")
    for package, name in zip(packages, names, strict=True):
        # go build names a binary after its package path without the major-version suffix.
        (out / re.sub(r"/v\d+$", "", package).rsplit("/", 1)[-1]).rename(out / name)


def module_source(version: str, module: str = MAIN_PACKAGES["etcd"], cache: Path | None = None) -> Path:
    """The source of `module` exactly as the build of `version` used it (from the Go module cache)."""
    home = directory(version, cache)
    if not (home / "go.mod").exists() or not go():
        raise InstallError(f"etcd {version} in {home} was not built from its Go modules, so its source is not here")
    answer = _go(["mod", "download", "-json", module], home, _go_env(), "go mod download")
    return Path(json.loads(answer)["Dir"])


def _go_env() -> dict[str, str]:
    # Static binaries like etcd's releases; no go.work of the surroundings; go.sum may be written.
    return {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -mod=mod"}


def _module_of(package: str) -> str:
    return "go.etcd.io/etcd/v3" if package == BENCHMARK_PACKAGE else package


def _tool_name(package: str) -> str:
    return next((tool for tool, main in MAIN_PACKAGES.items() if main == package), "benchmark")


def _go_version(env: Mapping[str, str]) -> str:
    result = subprocess.run([go() or "go", "env", "GOVERSION"], capture_output=True, text=True, env=dict(env),
                            check=False, timeout=60)
    return result.stdout.strip() or "go"


def _go(args: list[str], cwd: Path, env: Mapping[str, str], what: str, report: Report | None = None) -> str:
    """Runs the go command; with `report`, each module it downloads is reported as it starts."""
    # stdout goes to a file, so that reading stderr line by line can never block the command.
    with tempfile.TemporaryFile("w+") as stdout, subprocess.Popen(
            [go() or "go", *args], cwd=cwd, env=dict(env), stdout=stdout, stderr=subprocess.PIPE, text=True) as process:
        errors = []
        for line in process.stderr or ():
            errors.append(line)
            if report and line.startswith("go: downloading "):
                report(f"  downloading {line.removeprefix('go: downloading ').strip()}")
        if process.wait(timeout=BUILD_TIMEOUT_S) != 0:
            raise InstallError(f"{what} failed: {''.join(errors).strip()[-800:]}")
        stdout.seek(0)
        return stdout.read()


# --- from the official release ----------------------------------------------------------------

def machine_arch() -> str:
    arch = releases.ETCD_ARCH.get(platform.machine()) or {"aarch64": "arm64", "amd64": "amd64"}.get(platform.machine())
    if not arch:
        raise InstallError(f"etcd publishes no Linux release for {platform.machine()}")
    return arch


def fetch_release(version: str, out: Path, report: Report, arch: str | None = None,
                  url: str | None = None, sums: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Downloads the release tarball, refuses it unless its SHA-256 is the published one, then unpacks
    the three tools into `out`."""
    arch = arch or machine_arch()
    expected = (releases.SHA256 if sums is None else sums).get(version, {}).get(arch)
    if not expected:
        raise InstallError(f"etcd {version}: no published SHA-256 for linux-{arch} in etcd_stack/releases.py; "
                           f"known: {', '.join(releases.known_versions(arch))}")
    url = url or releases.download_url(version, arch)
    report(f"etcd {version}: downloading {url}")
    tarball = out / "release.tar.gz"
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            with tarball.open("wb") as file:
                for chunk in response.iter_content(1 << 20):
                    digest.update(chunk)
                    file.write(chunk)
    except requests.RequestException as error:
        raise InstallError(f"etcd {version}: download failed: {error}") from None
    if digest.hexdigest() != expected:
        tarball.unlink()
        raise InstallError(f"etcd {version}: {url} has SHA-256 {digest.hexdigest()}, not the published {expected}; "
                           "refused, nothing unpacked")
    report(f"etcd {version}: SHA-256 matches the published sum; unpacking")
    top = f"etcd-v{version}-linux-{arch}"
    with tarfile.open(tarball) as archive:
        for tool in TOOLS:
            try:
                member = archive.getmember(f"{top}/{tool}")
            except KeyError:
                raise InstallError(f"etcd {version}: the release has no {top}/{tool}") from None
            source = archive.extractfile(member)
            if not member.isfile() or source is None:
                raise InstallError(f"etcd {version}: {top}/{tool} in the release is not a file")
            with source, (out / tool).open("wb") as target:
                shutil.copyfileobj(source, target)
            (out / tool).chmod(0o755)
    tarball.unlink()


# --- checks ---------------------------------------------------------------------------------

def check_versions(home: Path, version: str, tools: tuple[str, ...]) -> None:
    for tool in tools:
        args, pattern = VERSION_CHECK[tool]
        result = subprocess.run([str(home / tool), *args], capture_output=True, text=True, timeout=30, check=False)
        match = re.search(pattern, result.stdout)
        reported = match.group(1) if match else f"no version ({(result.stdout + result.stderr).strip()[:80]!r})"
        if reported != version:
            raise InstallError(f"{tool} reports {reported}, not the {version} asked for")


# What the machine tests boot members from: a version no published sum in releases.py covers, built from
# etcd's Go modules, packed by release_tarball and given to the stack as etcd:releaseSha256.
MACHINE_VERSION = "3.6.16"
# A fixed time for every member of the tarball (2026-01-01T00:00:00Z): the bytes depend on the binaries only.
PACKED_MTIME = 1767225600


def release_tarball(version: str, cache: Path | None = None, arch: str | None = None) -> Path:
    """The locally installed etcd, etcdctl and etcdutl of `version`, packed like the official release
    (etcd-v<version>-linux-<arch>/<tool>), with fixed order, times, owners and modes and gzip's time 0: the
    same binaries give the same bytes, so its SHA-256 can stand in config as etcd:releaseSha256."""
    home = installed(version, cache)
    if home is None:
        raise InstallError(f"etcd {version} is not installed in {directory(version, cache)}: run ensure first")
    arch = arch or machine_arch()
    top = f"etcd-v{version}-linux-{arch}"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive:
        directory_entry = tarfile.TarInfo(top)
        directory_entry.type, directory_entry.mode = tarfile.DIRTYPE, 0o755
        entries = [(directory_entry, None)]
        for tool in sorted(TOOLS):
            info = tarfile.TarInfo(f"{top}/{tool}")
            info.size, info.mode = (home / tool).stat().st_size, 0o755
            entries.append((info, home / tool))
        for info, source in entries:
            info.mtime, info.uid, info.gid, info.uname, info.gname = PACKED_MTIME, 0, 0, "root", "root"
            if source is None:
                archive.addfile(info)
            else:
                with source.open("rb") as stream:
                    archive.addfile(info, stream)
    target = home.parent / f"{top}.tar.gz"
    # A name of this process's own: two test runs sharing the cache pack the same bytes side by side.
    staged = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with staged.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        zipped.write(packed.getvalue())
    staged.replace(target)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def default_version() -> str:
    """The etcd version a stack runs when it pins none (the etcd:version key's default)."""
    from etcd_stack.config import KEYS

    return next(key.default for key in KEYS if key.name == "version")


def tested_versions() -> list[str]:
    """What the tests run: the newest 3.5 and 3.7 with published sums and the stack's default version
    (3.4 is Debian's, from scripts/install-test-tools)."""
    return [releases.newest((3, 5)), default_version(), releases.newest((3, 7))]


def built_versions() -> list[str]:
    """What `python -m etcd_stack.sandbox.binaries` installs by default: the tested versions and the machine tests'."""
    return [*tested_versions(), MACHINE_VERSION]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etcd_stack.sandbox.binaries",
                                     description="install etcd, etcdctl and etcdutl of exact versions")
    parser.add_argument("versions", nargs="*", help="e.g. 3.6.14 (default: the versions the tests run)")
    parser.add_argument("--from", dest="method", choices=["go", "release"],
                        help="build from etcd's Go modules, or fetch the release (default: go when Go is here)")
    parser.add_argument("--benchmark", action="store_true", help="also build etcd's benchmark tool of each version")
    args = parser.parse_args(argv)
    try:
        for version in args.versions or built_versions():
            print(ensure(version, method=args.method), flush=True)
            if args.benchmark:
                print(ensure_benchmark(version), flush=True)
    except InstallError as error:
        print(f"etcd install: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

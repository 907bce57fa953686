"""One member machine: an instance booted by systemd-nspawn from the cached root file system, given its user_data
through cloud-init's NoCloud seed (gzip, as EC2 delivers it), its interface's network namespace and its data
volume as /dev/xvdf. The differences from an EC2 instance are named where they are made."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from etcd_stack.sandbox import processes

CGROUP_ROOT = Path("/sys/fs/cgroup/unified/etcd-machines")
# What systemd-nspawn answers when the container rebooted (systemd-nspawn(1), EXIT STATUS).
REBOOTED = 133
TIMED_OUT = 124
XEN_DEVICE = "/dev/xvdf"

# Seam: systemd-fstab-generator skips block devices in a container ("Running in a container, ignoring fstab device
# entry"), so at a reboot the data volume the bootstrap put in /etc/fstab would stay unmounted. This does for
# `UUID=` lines what it does on EC2: a mount unit before local-fs.target, which etcd's RequiresMountsFor= finds.
FSTAB_GENERATOR = """#!/bin/sh
out=$1
while read -r what where type options _; do
  case $what in UUID=*) ;; *) continue ;; esac
  unit=$(systemd-escape --path --suffix=mount "$where")
  printf '[Unit]\\nSourcePath=/etc/fstab\\nBefore=local-fs.target\\n' >"$out/$unit"
  printf '[Mount]\\nWhat=/dev/disk/by-uuid/%s\\nWhere=%s\\nType=%s\\nOptions=%s\\n' \\
    "${what#UUID=}" "$where" "$type" "$options" >>"$out/$unit"
  mkdir -p "$out/local-fs.target.wants"
  ln -sf "../$unit" "$out/local-fs.target.wants/$unit"
done </etc/fstab
"""


class MachineError(Exception):
    pass


@dataclass(frozen=True)
class Volume:
    """An EBS volume's stand-in: a sparse file on a loop device. It outlives every machine it is attached to."""

    image: Path

    def create(self, size_gib: int) -> None:
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as blank:
            blank.truncate(size_gib * 2**30)

    def attach(self) -> str:
        device = self.device()
        if device:
            return device
        return subprocess.run(["losetup", "--find", "--show", str(self.image)], capture_output=True, text=True,
                              check=True).stdout.strip()

    def device(self) -> str | None:
        listing = subprocess.run(["losetup", "--noheadings", "--output", "NAME", "--associated", str(self.image)],
                                 capture_output=True, text=True)
        names = listing.stdout.split()
        return names[0] if names else None

    def grow(self, size_gib: int) -> None:
        """As ModifyVolume does: the device grows under a running machine; the member grows its file system."""
        with self.image.open("r+b") as image:
            image.truncate(size_gib * 2**30)
        device = self.device()
        if device:
            subprocess.run(["losetup", "--set-capacity", device], check=True)

    def detach(self) -> None:
        device = self.device()
        while device:
            subprocess.run(["losetup", "--detach", device], check=True)
            device = self.device()


@dataclass(frozen=True)
class Instance:
    """What is needed to boot (and, from its record, to find and stop) one instance of a member."""

    instance_id: str
    member: str
    hostname: str
    netns: str
    home: str  # this instance's directory: root overlay, seed, logs

    @property
    def directory(self) -> Path:
        return Path(self.home)

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def cgroup(self) -> Path:
        return CGROUP_ROOT / self.instance_id

    @property
    def supervisor_pid_file(self) -> Path:
        return self.directory / "supervisor.pid"

    def save(self) -> None:
        (self.directory / "instance.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Instance:
        return cls(**json.loads((directory / "instance.json").read_text()))


class Machine:
    def __init__(self, instance: Instance):
        self.instance = instance

    # -- creating -------------------------------------------------------------------------------------------
    def prepare(self, base: Path, user_data: bytes, hosts: Mapping[str, str], environment: Mapping[str, str],
                trusted_ca: str = "") -> None:
        """A fresh root (an overlay over the unpacked base: the copy of the AMI this instance boots) with the seed;
        `trusted_ca` is added to the system's CA bundle."""
        directory = self.instance.directory
        for name in ("upper", "work", "root"):
            (directory / name).mkdir(parents=True, exist_ok=True)
        self.instance.save()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={base},upperdir={directory / 'upper'},workdir={directory / 'work'}",
                        str(self.instance.root)], check=True, capture_output=True, text=True)
        root = self.instance.root
        seed = root / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        # EC2 hands cloud-init the user_data gzip-compressed, as the program compresses it; cloud-init unzips it.
        (seed / "user-data").write_bytes(gzip.compress(user_data) if not user_data.startswith(b"\x1f\x8b")
                                          else user_data)
        (seed / "meta-data").write_text(f"instance-id: {self.instance.instance_id}\n"
                                        f"local-hostname: {self.instance.hostname}\n")
        # Seam: NoCloud instead of cloud-init's Ec2 datasource; the user_data and the modules that run are the same.
        (root / "etc/cloud/cloud.cfg.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/cloud/cloud.cfg.d/90-etcd-machines.cfg").write_text("datasource_list: [ NoCloud ]\n")
        # Seam: the private zone's records as Route 53 would answer them, from /etc/hosts.
        lines = ["127.0.0.1 localhost", f"127.0.1.1 {self.instance.hostname}"]
        lines += [f"{address} {name}" for name, address in sorted(hosts.items())]
        (root / "etc/hosts").write_text("\n".join(lines) + "\n")
        (root / "etc/hostname").write_text(self.instance.hostname + "\n")
        # Seam: every service finds the AWS stand-ins through AWS_ENDPOINT_URL, which the AWS CLI and botocore
        # honour; on EC2 the same calls go to the regional endpoints.
        generator = root / "etc/systemd/system-generators/etcd-machines-fstab"
        generator.parent.mkdir(parents=True, exist_ok=True)
        generator.write_text(FSTAB_GENERATOR)
        generator.chmod(0o755)
        dropin = root / "etc/systemd/system.conf.d"
        dropin.mkdir(parents=True, exist_ok=True)
        assignments = " ".join(f'"{key}={value}"' for key, value in sorted(environment.items()))
        (dropin / "90-etcd-machines.conf").write_text(f"[Manager]\nDefaultEnvironment={assignments}\n")
        if trusted_ca:
            # Seam: a stand-in's CA (discovery.etcd.io's) joins the public CAs the image trusts.
            with (root / "etc/ssl/certs/ca-certificates.crt").open("a") as bundle:
                bundle.write(trusted_ca)

    def boot(self, volume_device: str) -> None:
        """Starts the instance under a supervisor that boots it again when it reboots itself (as EC2 does)."""
        instance = self.instance
        instance.cgroup.mkdir(parents=True, exist_ok=True)
        nspawn = [
            "systemd-nspawn", "--boot", "--quiet",
            f"--directory={instance.root}", f"--machine={instance.member}", f"--hostname={instance.hostname}",
            # No systemd on the host: nothing to register with, and the container stays in our cgroup.
            "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{instance.netns}",
            # Without both, systemd cannot attach BPF programs and IPAddressDeny= silently does nothing.
            "--capability=CAP_BPF", "--system-call-filter=bpf",
            # Seam: the volume as the Xen device name (the bootstrap's second choice); on Nitro it is the NVMe
            # by-id link. The second bind lets mount(8) find it by UUID.
            f"--bind={volume_device}:{XEN_DEVICE}", f"--bind={volume_device}",
            "--console=read-only",
        ]
        # Each boot starts from the instance's own cgroup in the unified hierarchy, so systemd inside runs a
        # pure cgroup v2 as on AL2023; the supervisor itself stays outside it.
        # Seam: no udev in a container. The /dev/disk/by-uuid link udev makes on EC2 (which the fstab line the
        # bootstrap writes needs at every later boot) is bound in at each boot, once the volume has a file system.
        boot_once = (f'uuid=$(blkid -o value -s UUID {volume_device}); '
                     f'echo $$ > {instance.cgroup}/cgroup.procs && exec {" ".join(nspawn)} '
                     f'${{uuid:+--bind={volume_device}:/dev/disk/by-uuid/$uuid}}')
        supervisor = (
            'trap \'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0\' TERM\n'
            "while :; do\n"
            f"  sh -c '{boot_once}' & child=$!\n"
            '  wait "$child"; status=$?\n'
            f'  [ "$status" -eq {REBOOTED} ] || exit "$status"\n'
            "done\n"
        )
        log = (instance.directory / "console.log").open("ab")
        environment = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        process = subprocess.Popen(["sh", "-c", supervisor], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=environment, start_new_session=True)
        log.close()
        instance.supervisor_pid_file.write_text(f"{process.pid}\n")

    # -- finding ---------------------------------------------------------------------------------------------
    def supervisor_pid(self) -> int | None:
        try:
            pid = int(self.instance.supervisor_pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if processes.alive(pid) else None

    def init_pid(self) -> int | None:
        """The container's PID 1 (systemd), seen from the host: the process of the instance's cgroup tree whose
        command is systemd and whose parent is systemd-nspawn."""
        for procs in sorted(self.instance.cgroup.rglob("cgroup.procs")) if self.instance.cgroup.exists() else []:
            for line in procs.read_text().split():
                pid = int(line)
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    parent = int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])
                    parent_command = Path(f"/proc/{parent}/comm").read_text().strip()
                    command = Path(f"/proc/{pid}/comm").read_text().strip()
                except (OSError, StopIteration, ValueError):
                    continue
                if command == "systemd" and parent_command == "systemd-nspawn":
                    return pid
        return None

    def running(self) -> bool:
        return self.supervisor_pid() is not None and self.init_pid() is not None

    # -- using -----------------------------------------------------------------------------------------------
    def enter(self, command: Sequence[str], timeout_s: float, input_text: str | None = None,
              ) -> subprocess.CompletedProcess:
        """Runs a command in all the container's namespaces, outside its units (as a debugging shell would)."""
        pid = self.init_pid()
        if pid is None:
            raise MachineError(f"{self.instance.member}: the machine is not running")
        try:
            return subprocess.run(["nsenter", "-t", str(pid), "-a", *command], input=input_text,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as expired:
            return subprocess.CompletedProcess(list(command), TIMED_OUT, _text(expired.stdout),
                                               f"{_text(expired.stderr)}no answer within {timeout_s:g}s\n")

    def run(self, command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess:
        """Runs a command as root in a transient service of the machine's systemd, as the SSM agent runs a Run
        Command's script from its own service (so units' cgroups and the agent's are apart, as on EC2)."""
        unit = f"etcd-machines-run-{time.monotonic_ns()}"
        systemd_run = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", f"--unit={unit}",
                       "--property=KillMode=control-group", f"--property=RuntimeMaxSec={max(1, int(timeout_s))}",
                       "--", *command]
        result = self.enter(systemd_run, timeout_s + 10)
        if result.returncode == TIMED_OUT:
            self.enter(["systemctl", "kill", "--signal=SIGKILL", f"{unit}.service"], 10)
        return subprocess.CompletedProcess(list(command), result.returncode, result.stdout, result.stderr)

    def wait_booted(self, timeout_s: float) -> str:
        """Waits until systemd inside has finished starting up; returns its state (running or degraded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.supervisor_pid() is None:
                raise MachineError(f"{self.instance.member}: the machine stopped while booting; "
                                   f"console: {self.console_tail()}")
            if self.init_pid() is not None:
                left = max(1.0, deadline - time.monotonic())
                state = self.enter(["systemctl", "is-system-running", "--wait"], left).stdout.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.5)
        raise MachineError(f"{self.instance.member}: not booted within {timeout_s:g}s; console: {self.console_tail()}")

    def reboot(self, timeout_s: float) -> None:
        """`systemctl reboot` inside: systemd-nspawn exits with REBOOTED and the supervisor boots the same root
        again, as an instance reboots with its root and data volumes."""
        before = self.init_pid()
        if before is None:
            raise MachineError(f"{self.instance.member}: the machine is not running")
        self.enter(["systemctl", "reboot"], 30)
        deadline = time.monotonic() + timeout_s
        while self.init_pid() in (before, None):
            if time.monotonic() > deadline:
                raise MachineError(f"{self.instance.member}: did not come back within {timeout_s:g}s; "
                                   f"console: {self.console_tail()}")
            if self.supervisor_pid() is None:
                raise MachineError(f"{self.instance.member}: stopped instead of rebooting; "
                                   f"console: {self.console_tail()}")
            time.sleep(0.2)
        self.wait_booted(max(1.0, deadline - time.monotonic()))

    def console_tail(self, lines: int = 20) -> str:
        return " | ".join(processes.tail(self.instance.directory / "console.log", lines))

    # -- ending ----------------------------------------------------------------------------------------------
    def stop(self, timeout_s: float = 60) -> None:
        """A clean power-off: SIGTERM to systemd-nspawn makes the container's systemd shut down."""
        pid = self.supervisor_pid()
        if pid is not None:
            processes.stop_pid(pid, signal.SIGTERM, timeout_s)
        self._kill_leftovers()

    def kill(self) -> None:
        """Pulls the plug: no shutdown, as a failed host does."""
        self._kill_leftovers()
        pid = self.supervisor_pid()
        if pid is not None:
            processes.stop_pid(pid, signal.SIGKILL)

    def _kill_leftovers(self) -> None:
        cgroup = self.instance.cgroup
        if cgroup.exists() and (cgroup / "cgroup.kill").exists():
            (cgroup / "cgroup.kill").write_text("1")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _members(cgroup):
                time.sleep(0.1)

    def release(self) -> None:
        """After it stopped: the root file system unmounted and the cgroup gone (the volume is not touched)."""
        root = self.instance.root
        if os.path.ismount(root):
            subprocess.run(["umount", "--recursive", str(root)], check=False, capture_output=True)
            if os.path.ismount(root):
                subprocess.run(["umount", "--lazy", str(root)], check=True, capture_output=True)
        cgroup = self.instance.cgroup
        if cgroup.exists():
            for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            cgroup.rmdir()

    def discard(self) -> None:
        """Deletes the instance's root file system: a terminated instance's root volume."""
        shutil.rmtree(self.instance.directory / "upper", ignore_errors=True)
        shutil.rmtree(self.instance.directory / "work", ignore_errors=True)


def _members(cgroup: Path) -> list[str]:
    return [line for procs in cgroup.rglob("cgroup.procs") for line in procs.read_text().split()]


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value

"""What an instance has and a sandbox member lacks, kept as thin as a transport: `systemctl` for the two
units the member scripts and procedures touch, and `aws ssm get-parameter` answered from a local parameter
directory. They sit first on the PATH of every command the sandbox transport runs, so the scripts run as
shipped (on AWS the real systemd and SSM Parameter Store answer).

    etcd.service        the member's etcd process (start, stop, restart, is-active)
    etcd-backup.timer   a flag file beside the member (start, stop, is-active); nothing fires it
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from etcd_stack.sandbox.cluster import Sandbox, SandboxError

DIRECTORY = "standins"
DIR_ENV, MEMBER_ENV = "ETCD_SANDBOX_DIR", "ETCD_SANDBOX_MEMBER"
# systemctl's exit status for an inactive unit (`systemctl is-active`), and for an unknown one.
INACTIVE, UNKNOWN_UNIT = 3, 5

AWS = """#!/bin/bash
# The sandbox's stand-in for `aws ssm get-parameter --name NAME ...`: the value from its parameter directory.
set -euo pipefail
name=""
while (($#)); do
  case "$1" in
    --name) name=$2; shift 2 ;;
    *) shift ;;
  esac
done
if [[ -z $name || ! -f "$ETCD_SANDBOX_DIR/parameters$name" ]]; then
  echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: $name" >&2
  exit 254
fi
cat "$ETCD_SANDBOX_DIR/parameters$name"
"""


def path(directory: Path) -> Path:
    return directory / DIRECTORY


def write(directory: Path) -> Path:
    """The stand-ins, under the sandbox's directory: the PATH entry to put first."""
    where = path(directory)
    where.mkdir(parents=True, exist_ok=True)
    scripts = {
        "aws": AWS,
        "systemctl": f'#!/bin/bash\nexec {sys.executable} -m etcd_stack.sandbox.standins systemctl "$@"\n',
    }
    for name, text in scripts.items():
        (where / name).write_text(text)
        (where / name).chmod(0o755)
    return where


def timer_flag(box: Sandbox, member_name: str) -> Path:
    return box.home(box.member(member_name)) / "etcd-backup.timer.active"


def systemctl(box: Sandbox, member_name: str, argv: Sequence[str]) -> int:
    words = [word for word in argv if not word.startswith("--")]
    if not words:
        raise SandboxError("systemctl: no verb")
    verb, units = words[0], words[1:]
    with open(box.home(box.member(member_name)) / "systemctl.log", "a") as log:  # what was asked, in order
        log.write(" ".join(argv) + "\n")
    if verb in ("daemon-reload", "enable"):
        return 0
    member = box.member(member_name)
    status = 0
    for unit in units:
        if unit == "etcd.service":
            status = max(status, _etcd(box, member, verb, blocking="--no-block" not in argv))
        elif unit == "etcd-backup.timer":
            flag = timer_flag(box, member_name)
            if verb == "start":
                flag.touch()
            elif verb == "stop":
                flag.unlink(missing_ok=True)
            elif verb == "is-active" and not flag.exists():
                status = max(status, INACTIVE)
        else:
            print(f"Unit {unit} not found (the sandbox has etcd.service and etcd-backup.timer).", file=sys.stderr)
            return UNKNOWN_UNIT
    return status


def _etcd(box: Sandbox, member, verb: str, blocking: bool) -> int:
    if verb == "start":
        box.start(member)
        if blocking:  # Type=notify: systemd returns once etcd reports ready
            box.wait_healthy([member])
    elif verb == "stop":
        box.stop(member)
    elif verb == "restart":
        box.restart(member)
    elif verb == "is-active":
        return 0 if box.pid(member) is not None else INACTIVE
    else:
        print(f"systemctl {verb}: not something the sandbox does", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "systemctl":
        print("usage: python -m etcd_stack.sandbox.standins systemctl ...", file=sys.stderr)
        return 2
    box = Sandbox.load(Path(os.environ[DIR_ENV]))
    try:
        return systemctl(box, os.environ[MEMBER_ENV], argv[1:])
    except SandboxError as error:
        print(f"systemctl: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

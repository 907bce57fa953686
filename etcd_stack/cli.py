"""`etcd-stack`: the project's command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from cryptography.hazmat.primitives.serialization import Encoding

from etcd_stack import config
from etcd_stack.member import certificates, rendering
from etcd_stack.ops import procedures as operations
from etcd_stack.ops import rolling
from etcd_stack.ops.ssm import SsmTransport
from etcd_stack.ops.transport import BadInput, OperationError, Transport
from etcd_stack.preview import offline
from etcd_stack.sandbox import cluster as sandbox
from etcd_stack.sandbox import local as sandbox_local
from etcd_stack.sandbox.machines.fleet import FleetError
from etcd_stack.sandbox.machines.transport import MachineTransport
from etcd_stack.sandbox.transport import SandboxTransport
from etcd_stack.tags import MEMBER_TAG

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input to a command; the message is one line."""


def read_stack_file(project_dir: Path, stack: str) -> dict[str, str]:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise UsageError(f"--stack: {stack!r} has no {path.name} in {project_dir}")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path.name}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if document is not None and not isinstance(document, dict):
        raise UsageError(f"{path.name}: expected a YAML map with a 'config' section")
    return config.from_stack_file(document)


def render(args: argparse.Namespace) -> int:
    raw = read_stack_file(args.project_dir, args.stack)
    run = offline.run(raw, args.stack, program=args.project_dir / "__main__.py")
    inventory = [resource.public() for resource in run.resources]

    user_data = {
        resource.inputs["tags"][MEMBER_TAG]: rendering.decompress(resource.inputs["userDataBase64"])
        for resource in run.of_type("aws:ec2/instance:Instance")
        if MEMBER_TAG in resource.inputs.get("tags", {})
    }

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "inventory.json").write_text(json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    members_dir = out / "members"
    if members_dir.exists():
        shutil.rmtree(members_dir)
    for member, text in sorted(user_data.items()):
        (members_dir / member).mkdir(parents=True)
        (members_dir / member / "user-data").write_text(text)

    counts = Counter(resource.type for resource in run.resources)
    print(f"{args.stack}: {len(inventory)} resources in {run.config.region} -> {out / 'inventory.json'}")
    print(f"{len(user_data)} members' user_data -> {members_dir}/<member>/user-data")
    for typ, count in sorted(counts.items()):
        print(f"  {count:3d}  {typ}")
    return 0


def sandbox_up(args: argparse.Namespace) -> int:
    raw = read_stack_file(args.project_dir, args.stack)
    cfg = config.load(raw, args.stack)
    bootstrap = config.Bootstrap(args.bootstrap) if args.bootstrap else cfg.bootstrap
    started = time.monotonic()
    try:
        box = sandbox.up(args.dir, args.stack, cfg, bootstrap, report=print, timeout_s=args.timeout)
    except sandbox.MemberFailed as failure:
        print(f"etcd-stack sandbox up: {failure}; the last lines of its log:", file=sys.stderr)
        for line in failure.log:
            print(f"    {line}", file=sys.stderr)
        print("stopped the other members", file=sys.stderr)
        return 1
    env = box.directory / "etcdctl.env"
    print(f"ready: {len(box.members)} members healthy in {time.monotonic() - started:.1f}s")
    print("try:")
    for line in (f"source {env}", "etcdctl member list --write-out table", "etcdctl endpoint health",
                 "etcdctl put greeting hello && etcdctl get greeting",
                 f"etcd-stack sandbox status --dir {args.dir}", f"etcd-stack sandbox down --dir {args.dir}"):
        print(f"  {line}")
    return 0


def sandbox_status(args: argparse.Namespace) -> int:
    """The members' processes, then the same status `etcd-stack status` shows of a stack."""
    box = sandbox.Sandbox.load(args.dir.resolve())
    print(f"{'member':8} {'address':12} {'pid':>7}  log")
    for member in box.members:
        print(f"{member.name:8} {member.ip:12} {box.pid(member) or '-'!s:>7}  {box.log_file(member)}")
    print()
    return 0 if operations.status(SandboxTransport(box), report=print) else 1


def sandbox_down(args: argparse.Namespace) -> int:
    stopped = sandbox.down(args.dir, purge=args.purge)
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    if args.purge:
        print(f"removed the sandbox's files from {args.dir}")
    return 0


# --- day-2 procedures: the same verbs on a stack (SSM), a sandbox (local processes) and machines --------

def transport(args: argparse.Namespace) -> Transport:
    if args.machines is not None:
        try:
            return MachineTransport(args.machines.resolve())
        except FleetError as error:
            raise UsageError(f"--machines: {error}") from None
    if args.sandbox is not None:
        try:
            return SandboxTransport(sandbox.Sandbox.load(args.sandbox.resolve()))
        except sandbox.SandboxError as error:
            raise UsageError(str(error).replace("--dir:", "--sandbox:")) from None
    cfg = config.load(read_stack_file(args.project_dir, args.stack), args.stack)
    try:
        return SsmTransport.connect(args.stack, cfg.cluster_name, cfg.region)
    except NoCredentialsError:
        raise UsageError("no AWS credentials: set AWS_PROFILE (or sign in with `aws sso login`)") from None


def status(args: argparse.Namespace) -> int:
    return 0 if operations.status(transport(args), report=print) else 1


def backup(args: argparse.Namespace) -> int:
    operations.backup(transport(args), report=print, force=args.force)
    return 0


def snapshots(args: argparse.Namespace) -> int:
    held = operations.snapshots(transport(args))
    for url, size in held:
        print(f"{url}  {size} bytes")
    print(f"{len(held)} snapshots")
    return 0


def restore(args: argparse.Namespace) -> int:
    via = transport(args)
    token = operations.restore(via, args.snapshot, report=print, force=args.force)
    print(f"restored: {len(via.members())} members healthy, a new cluster ({token}) with the snapshot's data")
    return 0


def replace_member(args: argparse.Namespace) -> int:
    operations.replace_member(transport(args), args.member, report=print, force=args.force)
    print(f"{args.member} replaced: a voting member again, caught up with the cluster")
    return 0


def refresh_tls(args: argparse.Namespace) -> int:
    via = transport(args)
    operations.refresh_tls(via, report=print, force=args.force)
    print(f"refreshed the TLS files of {len(via.members())} members, one member at a time")
    return 0


def defrag(args: argparse.Namespace) -> int:
    via = transport(args)
    operations.defrag(via, report=print, force=args.force)
    print(f"defragmented {len(via.members())} members, the leader last")
    return 0


def recover_space(args: argparse.Namespace) -> int:
    via = transport(args)
    operations.recover_space(via, report=print, force=args.force)
    print(f"space recovered: {len(via.members())} members defragmented, the alarm disarmed, writes taken")
    return 0


def sandbox_roll(args: argparse.Namespace) -> int:
    box = sandbox.Sandbox.load(args.dir.resolve())
    cfg = config.load(read_stack_file(args.project_dir, args.stack), args.stack) if args.stack else None
    rolling.roll(box, report=print, cfg=cfg, binary=args.etcd_bin)
    print(f"rolled {len(box.members)} members, one at a time")
    return 0


def sandbox_resize(args: argparse.Namespace) -> int:
    box = sandbox.Sandbox.load(args.dir.resolve())
    rolling.resize(box, args.size, report=print)
    print(f"{len(box.members)} members, each healthy and caught up")
    return 0


def sandbox_rotate_certs(args: argparse.Namespace) -> int:
    box = sandbox.Sandbox.load(args.dir.resolve())
    operations.rotate_certs(box, report=print)
    print(f"rotated the certificates of {len(box.members)} members and the operator, one member at a time")
    return 0


def sandbox_rotate_ca(args: argparse.Namespace) -> int:
    box = sandbox.Sandbox.load(args.dir.resolve())
    operations.rotate_ca(box, report=print)
    print("moved to the new CA; the old one is trusted nowhere")
    return 0


def operator_csr(args: argparse.Namespace) -> int:
    key_file, csr_file = args.out / f"{args.name}.key", args.out / f"{args.name}.csr"
    for path in (key_file, csr_file):
        if path.exists():
            raise UsageError(f"--out: {path} exists; move it away or pick another directory")
    key = certificates.new_private_key()
    request = certificates.signing_request(key, args.name, (), ()).public_bytes(Encoding.PEM).decode()
    config.check_operator_csr("--name", args.name, request)
    args.out.mkdir(parents=True, exist_ok=True)
    # The key is created private: it never exists readable by others, not even for a moment.
    with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as private:
        private.write(certificates.key_pem(key))
    csr_file.write_text(request)
    print(f"{key_file}: your private key; it stays on this machine")
    print(f"{csr_file}: the request the stack signs; then:")
    print(f"  pulumi config set --path 'etcd:operatorCsrs.{args.name}' -- \"$(cat {csr_file})\"")
    print("  pulumi up")
    print(f"  pulumi stack output operatorCerts --json | jq -r '.[\"{args.name}\"]' > {args.out / args.name}.crt")
    return 0


def sandbox_sign_csr(args: argparse.Namespace) -> int:
    if not args.csr.is_file():
        raise UsageError(f"--csr: {args.csr} is not a file")
    cert = sandbox_local.sign_person(args.dir.resolve(), args.csr.read_text())
    out = args.csr.with_suffix(".crt")
    out.write_text(cert)
    print(f"{out}: a client certificate from the sandbox's CA for the key beside {args.csr.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etcd-stack", description="etcd on AWS: render, sandbox, operations.")
    commands = parser.add_subparsers(dest="command", required=True)

    render_parser = commands.add_parser(
        "render", help="run the program under mocks and write the resource inventory (no AWS account needed)"
    )
    render_parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    render_parser.add_argument("--out", required=True, type=Path, help="directory to write inventory.json into")
    render_parser.add_argument(
        "--project-dir", type=Path, default=offline.PROJECT_DIR, help="the Pulumi project (default: this checkout)"
    )
    render_parser.set_defaults(handler=render)

    csr_parser = commands.add_parser(
        "operator-csr", help="make your own client key and a certificate request for etcd:operatorCsrs"
    )
    csr_parser.add_argument("--name", required=True, help="your name, the certificate's CN (e.g. alice)")
    csr_parser.add_argument("--out", type=Path, default=Path("."), help="directory for NAME.key and NAME.csr")
    csr_parser.set_defaults(handler=operator_csr)

    sandbox_parser = commands.add_parser("sandbox", help="the stack's cluster as real etcd processes on this machine")
    actions = sandbox_parser.add_subparsers(dest="action", required=True)

    def action(name: str, handler: Callable[[argparse.Namespace], int], what: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=what)
        parser.add_argument("--dir", required=True, type=Path, help="the sandbox's directory")
        parser.set_defaults(handler=handler)
        return parser

    up_parser = action("up", sandbox_up, "start the members (loopback, TLS) and wait until they are healthy")
    up_parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    up_parser.add_argument("--bootstrap", choices=[b.value for b in config.Bootstrap],
                           help="override the stack's bootstrap (discovery runs a local v2 discovery service)")
    up_parser.add_argument("--timeout", type=float, default=sandbox.START_TIMEOUT_S,
                           help="seconds to wait for health (default %(default)s)")
    up_parser.add_argument("--project-dir", type=Path, default=offline.PROJECT_DIR, help=argparse.SUPPRESS)
    action("status", sandbox_status, "members, leader, raft term and health")
    down_parser = action("down", sandbox_down, "stop every process `up` started")
    down_parser.add_argument("--purge", action="store_true", help="also remove data, certificates and logs")
    roll_parser = action("roll", sandbox_roll, "replace members one at a time, through the gates, with new settings "
                                               "or etcd")
    roll_parser.add_argument("--stack", help="re-read Pulumi.<stack>.yaml (heartbeatMs, electionMs)")
    roll_parser.add_argument("--etcd-bin", type=Path, help="upgrade: the etcd binary to roll onto")
    roll_parser.add_argument("--project-dir", type=Path, default=offline.PROJECT_DIR, help=argparse.SUPPRESS)
    resize_parser = action("resize", sandbox_resize, "grow or shrink the cluster one member at a time")
    resize_parser.add_argument("--size", required=True, type=int, help="the new number of members: 1, 3, 5 or 7")
    action("rotate-certs", sandbox_rotate_certs, "re-issue every certificate from the same CA, one member at a time")
    sign_parser = action("sign-csr", sandbox_sign_csr, "sign a person's request as etcd:operatorCsrs does on AWS")
    sign_parser.add_argument("--csr", required=True, type=Path, help="a request from `etcd-stack operator-csr`")
    action("rotate-ca", sandbox_rotate_ca, "move to a new CA: trust both, issue from the new one, drop the old")

    def verb(name: str, handler: Callable[[argparse.Namespace], int], what: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=what)
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--stack", help="a deployed stack: members found by their tags, reached through SSM")
        where.add_argument("--sandbox", type=Path, metavar="DIR", help="a sandbox's directory (`sandbox up --dir`)")
        where.add_argument("--machines", type=Path, metavar="DIR",
                           help="members booted as machines (the tests' fleet directory), reached as Run Command would")
        parser.add_argument("--project-dir", type=Path, default=offline.PROJECT_DIR, help=argparse.SUPPRESS)
        parser.set_defaults(handler=handler)
        return parser

    def changing(name: str, handler: Callable[[argparse.Namespace], int], what: str) -> argparse.ArgumentParser:
        parser = verb(name, handler, what)
        parser.add_argument("--force", action="store_true", help="go on even though a member is unhealthy")
        return parser

    verb("status", status, "members, leader, raft term and index, health as the load balancer sees it, alarms")
    changing("backup", backup, "a snapshot now, taken and uploaded by the leader")
    verb("snapshots", snapshots, "the snapshots the backup destination holds")
    restore_parser = changing("restore", restore, "every member from one snapshot, into a new cluster")
    restore_parser.add_argument("--snapshot", required=True, help="a snapshot's URL or name (see `snapshots`)")
    replace_parser = changing("replace-member", replace_member, "a member's data moved aside; it rejoins afresh")
    replace_parser.add_argument("--member", required=True, help="e.g. etcd-1")
    changing("refresh-tls", refresh_tls, "each member fetches its key, certificate and CAs again, one at a time")
    changing("defrag", defrag, "defragment every member from the leader, followers first, the leader last")
    changing("recover-space", recover_space, "after a NOSPACE alarm: compact, defragment every member, disarm, "
                                             "check that writes are taken")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, config.ConfigError) as error:
        print(f"etcd-stack {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as error:
        print(f"etcd-stack {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OperationError, ClientError, BotoCoreError) as error:
        print(f"etcd-stack {args.command}: {error}", file=sys.stderr)
        return 1
    except sandbox.SandboxError as error:
        print(f"etcd-stack {' '.join(filter(None, (args.command, getattr(args, 'action', None))))}: {error}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

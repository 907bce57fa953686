"""`etcd-stack`: the project's command line."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from etcd_stack import config, offline
from etcd_stack.members import MEMBER_TAG

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
        resource.inputs["tags"][MEMBER_TAG]: resource.inputs["userData"]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etcd-stack", description="etcd on AWS: offline render and local tools.")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, config.ConfigError) as error:
        print(f"etcd-stack {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

"""A snapshot carries the SHA-256 its backup recorded; restore, on real etcd in the sandbox, refuses
one whose bytes changed since, even when etcd's own integrity check would pass it."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcd_stack.ops import procedures as operations
from etcd_stack.sandbox.cluster import SandboxError
from etcd_stack.sandbox.transport import SandboxTransport
from tests.sandbox.test_sandbox import make_sandbox, write

__all__ = ["make_sandbox"]


def test_a_snapshot_changed_after_its_backup_is_refused_and_the_data_left_alone(make_sandbox):
    box = make_sandbox()
    write(box, "greeting", "hello")
    snapshot = Path(operations.backup(SandboxTransport(box), report=lambda _: None).removeprefix("file://"))
    recorded, _name = snapshot.with_name(snapshot.name + ".sha256").read_text().split()
    # One value rewritten in place: same size, still a database etcd would restore.
    changed = snapshot.with_name("changed.db")
    changed.write_bytes(snapshot.read_bytes().replace(b"hello", b"jello"))
    assert changed.read_bytes() != snapshot.read_bytes()
    Path(f"{changed}.sha256").write_text(f"{recorded}  changed.db\n")
    for member in box.members:
        box.stop(member)
    data = Path(box.paths(box.members[0]).data_dir)
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(SandboxError, match="does not match its SHA-256"):
        box.run_script(box.members[0], "etcd-restore", f"file://{changed}", "new-token")
    assert sorted(p.name for p in data.iterdir()) == before
    # The untouched snapshot restores.
    box.run_script(box.members[0], "etcd-restore", f"file://{snapshot}", "new-token")

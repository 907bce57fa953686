"""The harness leaves nothing behind: a start that fails half-way is undone, and the same directory takes a new
fleet afterwards."""

from __future__ import annotations

import dataclasses

import pytest

from etcd_stack.preview import machines
from etcd_stack.sandbox import binaries
from etcd_stack.sandbox.machines import fleet
from tests.machines.conftest import leftovers, namespaces, render, require_machine_tools

pytestmark = pytest.mark.machines


def test_a_start_that_fails_half_way_leaves_nothing_and_the_directory_starts_again(tmp_path):
    require_machine_tools()
    run = render()
    plan = machines.plan(run, release=binaries.release_tarball(binaries.MACHINE_VERSION).read_bytes())
    name = fleet.new_run()
    # The world, the AWS stand-in, the load balancer and the first member's interface exist when its volume
    # cannot be made.
    broken = dataclasses.replace(plan, volume_gib=-1)
    with pytest.raises(OSError):
        fleet.Fleet.start(tmp_path, broken, machines.user_data(run), report=print, held=("etcd-1", "etcd-2"),
                          run=name)
    assert leftovers(tmp_path) == []
    assert namespaces(name) == set()
    assert not (tmp_path / fleet.STATE_FILE).exists()
    # Every instance held back: no machine boots, yet the whole world is made again in the same directory.
    every = tuple(member.name for member in plan.members)
    started = fleet.Fleet.start(tmp_path, plan, machines.user_data(run), report=print, held=every, run=name)
    assert len(namespaces(name)) == 1 + len(plan.members)
    assert started.state.aws_pid and started.state.balancer_pid
    fleet.down(tmp_path)
    assert leftovers(tmp_path) == []
    assert namespaces(name) == set()

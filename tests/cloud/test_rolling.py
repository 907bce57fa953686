"""How `pulumi up` reaches the members, as the program registers it: one member at a time through its gates on
a running cluster, all at once on a new one, and no edge through which replacing one member deletes another.

The engine side (the SDK waits for every dependency before it registers a resource; a pure `depends_on` edge
orders but never deletes) is in DESIGN.md's facts; here the program's side of that contract is checked.
"""

from __future__ import annotations

import re

import pytest

from etcd_stack.preview import offline
from etcd_stack.preview.mocks import StackMocks

DYNAMIC = "pulumi-python:dynamic:Resource"
INSTANCE = "aws:ec2/instance:Instance"
MEMBER = re.compile(r"^etcd-etcd-(\d+)(-|$)")
RAW = {"aws:region": "eu-west-2", "etcd:bastion": "false", "etcd:bootstrap": "static"}


class RunningCluster(StackMocks):
    """The mocks of a stack deployed before: the cluster record says the cluster runs."""

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        if args.name == "etcd-version":
            state = {**state, "bootstrapped": True}
        return resource_id, state


def run(mocks_class=StackMocks, **etcd) -> list[offline.Registered]:
    raw = {**RAW, **{f"etcd:{key}": str(value) for key, value in etcd.items()}}
    monitor = offline.RecordingMonitor(mocks_class("eu-west-2"))
    offline.execute(raw, "test", monitor)
    return monitor.registered


def named(resources, name: str, typ: str) -> offline.Registered:
    (found,) = [r for r in resources if r.name == name and r.type == typ]
    return found


def member_index(name: str) -> int | None:
    match = MEMBER.match(name)
    return int(match.group(1)) if match else None


@pytest.fixture(scope="module")
def new_cluster():
    return run()


@pytest.fixture(scope="module")
def running_cluster():
    return run(RunningCluster)


def test_what_members_run_is_never_ignored_and_a_new_bootstrap_takes_a_new_instance(new_cluster):
    instances = [r for r in new_cluster if r.type == INSTANCE and member_index(r.name) is not None]
    assert len(instances) == 3
    for instance in instances:
        assert instance.ignore_changes == ()
        assert instance.inputs["userDataReplaceOnChange"] is True
        assert instance.delete_before_replace


def test_each_instance_waits_for_its_own_before_gate(new_cluster):
    for index in range(3):
        instance = named(new_cluster, f"etcd-etcd-{index}", INSTANCE)
        assert (DYNAMIC, f"etcd-etcd-{index}-before") in instance.depends_on
        after = named(new_cluster, f"etcd-etcd-{index}-after", DYNAMIC)
        assert after.property_dependencies["instance"] == ((INSTANCE, f"etcd-etcd-{index}"),)
        assert after.inputs["phase"] == "after" and after.inputs["member"] == f"etcd-{index}"


def test_a_new_cluster_is_not_serialised(new_cluster):
    for index in range(3):
        before = named(new_cluster, f"etcd-etcd-{index}-before", DYNAMIC)
        assert not any(name.endswith("-after") for _, name in before.depends_on), before.depends_on


def test_a_running_cluster_rolls_one_member_after_the_other(running_cluster):
    assert (DYNAMIC, "etcd-etcd-0-after") not in named(running_cluster, "etcd-etcd-0-before", DYNAMIC).depends_on
    for index in (1, 2):
        before = named(running_cluster, f"etcd-etcd-{index}-before", DYNAMIC)
        assert (DYNAMIC, f"etcd-etcd-{index - 1}-after") in before.depends_on
    assert all(r.inputs.get("bootstrapped") is True for r in running_cluster if r.name.endswith(("-before", "-after")))


@pytest.mark.parametrize("fixture", ["new_cluster", "running_cluster"])
def test_no_input_of_a_member_comes_from_another_member(fixture, request):
    resources = request.getfixturevalue(fixture)
    crossing = []
    for resource in resources:
        mine = member_index(resource.name)
        if mine is None:
            continue
        for prop, sources in resource.property_dependencies.items():
            crossing += [(resource.name, prop, name) for _, name in sources
                         if member_index(name) is not None and member_index(name) != mine]
    assert crossing == []


def test_the_cross_member_check_would_see_such_an_edge(running_cluster):
    before = named(running_cluster, "etcd-etcd-1-before", DYNAMIC)
    # The chain is an ordering edge, not an input: were it an input, the check above would name it.
    assert all(member_index(name) in (None, 1) for sources in before.property_dependencies.values()
               for _, name in sources)
    assert any(member_index(name) == 0 for _, name in before.depends_on)


def test_nothing_outside_a_member_takes_an_instance_as_input(new_cluster):
    # Instances are replaced delete-first: a dependent input would be deleted with them.
    for resource in new_cluster:
        for prop, sources in resource.property_dependencies.items():
            for typ, name in sources:
                if typ == INSTANCE and member_index(name) is not None:
                    assert member_index(resource.name) == member_index(name), (resource.name, prop, name)


def revisions(resources) -> dict[str, str]:
    return {r.name: r.inputs["revision"] for r in resources if r.name.endswith("-before")}


@pytest.mark.parametrize(("change", "rolls"), [
    ({"heartbeatMs": 150}, True),
    ({"instanceType": "m7i.xlarge"}, True),
    ({"version": "3.6.13"}, True),
    ({"dataVolumeSize": 12}, True),  # the backend quota follows a volume under 16 GiB
    ({"dataVolumeSize": 40}, False),  # over 16 GiB the quota stays 8 GiB: the file system grows online
    ({"alarmTopicArn": "arn:aws:sns:eu-west-2:123456789012:etcd"}, False),
    ({"backupRetentionDays": 30}, False),
])
def test_a_gate_revision_changes_exactly_when_what_the_member_runs_changes(new_cluster, change, rolls):
    before, after = revisions(new_cluster), revisions(run(**change))
    assert len(before) == 3
    if rolls:
        assert all(before[name] != after[name] for name in before)
    else:
        assert before == after


def test_a_running_cluster_retires_unplanned_members_highest_first_before_any_member_rolls(running_cluster):
    retire = {r.inputs["member"]: r for r in running_cluster if r.name.endswith("-retire")}
    assert sorted(retire) == ["etcd-3", "etcd-4", "etcd-5", "etcd-6"]
    assert all(r.inputs["members"] == ["etcd-0", "etcd-1", "etcd-2"] for r in retire.values())
    assert not any(name.endswith("-retire") for _, name in retire["etcd-6"].depends_on)
    for index in (5, 4, 3):
        assert (DYNAMIC, f"etcd-etcd-{index + 1}-retire") in retire[f"etcd-{index}"].depends_on
    assert (DYNAMIC, "etcd-etcd-3-retire") in named(running_cluster, "etcd-etcd-0-before", DYNAMIC).depends_on


def test_a_new_cluster_waits_for_no_retirement(new_cluster):
    for resource in new_cluster:
        if resource.name.endswith(("-retire", "-before")):
            assert not any(name.endswith(("-retire", "-after")) for _, name in resource.depends_on), resource.name


def member_resources(resources, index: int) -> set[tuple[str, str]]:
    return {(r.type, r.name) for r in resources if member_index(r.name) == index and not r.name.endswith("-retire")}


def test_a_bigger_cluster_adds_whole_members_and_retires_only_beyond_its_size(new_cluster):
    five = run(RunningCluster, clusterSize=5)
    for index in (3, 4):
        assert member_resources(new_cluster, index) == set()
        types = {typ for typ, _ in member_resources(five, index)}
        assert {INSTANCE, "aws:ec2/networkInterface:NetworkInterface", "aws:ebs/volume:Volume",
                "aws:ec2/volumeAttachment:VolumeAttachment", DYNAMIC} <= types
    assert sorted(r.inputs["member"] for r in five if r.name.endswith("-retire")) == ["etcd-5", "etcd-6"]
    # the new members join after the members there are, one at a time
    assert (DYNAMIC, "etcd-etcd-2-after") in named(five, "etcd-etcd-3-before", DYNAMIC).depends_on
    assert (DYNAMIC, "etcd-etcd-3-after") in named(five, "etcd-etcd-4-before", DYNAMIC).depends_on
    assert all(r.inputs["members"] == [f"etcd-{i}" for i in range(5)] for r in five if "phase" in r.inputs)

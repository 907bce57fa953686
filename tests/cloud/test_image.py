"""The members' image stays what it was until a new generation is asked for."""

from etcd_stack.cloud.image import PinnedImageProvider

OLD, NEW = "ami-0aaa", "ami-0bbb"


def checked(olds: dict, generation: int = 1, architecture: str = "x86_64", latest: str = NEW) -> str:
    news = {"latest": latest, "generation": generation, "architecture": architecture, "image": None}
    return PinnedImageProvider().check(olds, news).inputs["image"]


def test_a_new_stack_takes_the_newest_image():
    assert checked({}) == NEW


def test_a_newer_release_does_not_move_a_running_stack():
    old = {"latest": OLD, "generation": 1, "architecture": "x86_64", "image": OLD}
    assert checked(old) == OLD
    assert not PinnedImageProvider().diff(OLD, old, {**old, "latest": NEW}).changes


def test_a_new_generation_or_cpu_takes_the_newest_image():
    old = {"latest": OLD, "generation": 1, "architecture": "x86_64", "image": OLD}
    assert checked(old, generation=2) == NEW
    assert checked(old, architecture="arm64") == NEW
    assert PinnedImageProvider().diff(OLD, old, {**old, "image": NEW}).changes

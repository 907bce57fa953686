"""The machine image members run, pinned in the stack's state: a new Amazon Linux release rolls nothing
until `etcd:imageGeneration` asks for it."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult


class PinnedImageProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        keep = olds.get("image") and all(olds.get(key) == news.get(key) for key in ("generation", "architecture"))
        return CheckResult({**news, "image": olds["image"] if keep else news["latest"]}, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["image"], outs=props)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("image") != news.get("image"), replaces=[])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


class PinnedImage(pulumi.dynamic.Resource):
    image: pulumi.Output[str]

    def __init__(self, name: str, latest: pulumi.Input[str], generation: int, architecture: str,
                 opts: pulumi.ResourceOptions | None = None):
        props = {"latest": latest, "generation": generation, "architecture": architecture, "image": None}
        super().__init__(PinnedImageProvider(), name, props, opts)

"""Runs the real program (`__main__.py`) in-process under the mocks and records what it registers."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from etcd_stack import config
from etcd_stack.preview.mocks import StackMocks
from etcd_stack.preview.wire import redact

PROJECT = "etcd-aws"
PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    ignore_changes: tuple[str, ...] = ()
    delete_before_replace: bool = False
    # Input property -> the (type, name) of each resource its value came from.
    property_dependencies: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # Every resource this one waits for, as (type, name).
    depends_on: tuple[tuple[str, str], ...] = ()
    # Inputs whose change replaces the resource instead of updating it.
    replace_on_changes: tuple[str, ...] = ()
    # Left in the account (only forgotten by the stack) on `pulumi destroy`.
    retain_on_delete: bool = False

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The names of the resources this one waits for."""
        return tuple(name for _, name in self.depends_on)

    def public(self) -> dict[str, Any]:
        """The inventory entry: secret values replaced by a marker; what it waits for, explicitly or through
        its inputs (the SDK awaits both before registering it)."""
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": redact(self.inputs),
                "dependencies": [{"type": typ, "name": name} for typ, name in self.depends_on]}


@dataclass(frozen=True)
class OfflineRun:
    config: config.StackConfig
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str] = frozenset()

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def by_id(self, resource_id: str) -> Registered:
        return next(r for r in self.resources if r.id == resource_id)

    def named(self, name: str, typ: str | None = None) -> Registered:
        found = [r for r in self.resources if r.name == name and (typ is None or r.type == typ)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} of type {typ}")
        return found[0]


def _type_and_name(urn: str) -> tuple[str, str]:
    _, _, qualified_type, name = urn.split("::", 3)
    return qualified_type.split("$")[-1], name


def _logical_name(urn: str) -> str | None:
    if not urn or urn.split("::")[2].endswith("pulumi:pulumi:Stack"):
        return None
    return urn.split("::")[-1]


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's type, name, parent and raw inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            state = self.resources[response.urn].state
            self.registered.append(
                Registered(request.type, request.name, _logical_name(request.parent), inputs, response.id, state,
                           tuple(request.ignoreChanges), request.deleteBeforeReplace,
                           {prop: tuple(_type_and_name(urn) for urn in deps.urns)
                            for prop, deps in request.propertyDependencies.items()},
                           tuple(sorted(_type_and_name(urn) for urn in request.dependencies)),
                           tuple(request.replaceOnChanges), retain_on_delete=request.retainOnDelete)
            )
        return response


@contextlib.contextmanager
def _own_event_loops() -> Iterator[None]:
    """Each run gets a fresh event loop, closed at the end with its executor. The mock monitor
    answers from executor threads, where the SDK makes an event loop per thread that nobody closes;
    left to the garbage collector at exit, they print errors. They are closed here too."""
    created: list[asyncio.AbstractEventLoop] = []
    original = asyncio.new_event_loop

    def tracked() -> asyncio.AbstractEventLoop:
        loop = original()
        created.append(loop)
        return loop

    main = original()
    asyncio.set_event_loop(main)
    asyncio.new_event_loop = tracked
    try:
        yield
    finally:
        asyncio.new_event_loop = original
        main.run_until_complete(main.shutdown_default_executor())
        for loop in [*created, main]:
            if not loop.is_running():
                loop.close()
        asyncio.set_event_loop(None)


@contextlib.contextmanager
def _pickler_restored() -> Iterator[None]:
    """Puts back what pulumi.dynamic.dynamic.serialize_provider patches into pickle._Pickler and never restores:
    each dynamic resource wraps _batch_setitems once more, so a process that runs the program a thousand times
    (this test suite) ends in RecursionError. `pulumi up` runs it once per process and is not affected."""
    saved = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict, pickle.Pickler)
    try:
        yield
    finally:
        pickle._Pickler._batch_setitems, pickle._Pickler.save_dict, pickle.Pickler = saved


def run(raw: Mapping[str, str], stack: str, program: Path = PROJECT_DIR / "__main__.py") -> OfflineRun:
    """Validates the config, then runs the program under the mocks. A ConfigError leaves nothing registered."""
    stack_config = config.load(raw, stack)
    monitor = RecordingMonitor(StackMocks(stack_config.region, stack))
    outputs, secret_outputs = execute(raw, stack, monitor, program)
    ordered = sorted(monitor.registered, key=lambda r: (r.name, r.type))
    return OfflineRun(config=stack_config, resources=ordered, outputs=outputs, secret_outputs=secret_outputs)


def execute(raw: Mapping[str, str], stack: str, monitor: RecordingMonitor,
            program: Path = PROJECT_DIR / "__main__.py") -> tuple[dict[str, Any], frozenset[str]]:
    """Runs the program under the monitor's mocks; returns its outputs and which of them are secret."""

    async def resolve_outputs() -> tuple[dict[str, Any], frozenset[str]]:
        root = settings.get_root_resource()
        values = await pulumi.Output.from_input(root.outputs).future(with_unknowns=True) or {}
        secret = {name for name, value in root.outputs.items() if await pulumi.Output.from_input(value).is_secret()}
        return values, frozenset(secret)

    with _own_event_loops(), _pickler_restored():
        settings.ROOT.set(None)
        pulumi.runtime.set_all_config(dict(raw))
        pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
        return _sync_await(resolve_outputs())

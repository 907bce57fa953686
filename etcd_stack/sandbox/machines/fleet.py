"""A stack's members as machines, with the AWS they talk to: the world network, the stand-ins (AWS APIs, each
instance's metadata service, the load balancer), an interface and a volume per member that outlive its
instances, and the instances themselves. Its state is a file, so another process (a test, the CLI) finds it,
and `down` tears down whatever is left even after a failure."""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from etcd_stack.sandbox import processes
from etcd_stack.sandbox.machines import aws, balancer, discovery, metadata, rootfs
from etcd_stack.sandbox.machines.machine import CGROUP_ROOT, Instance, Machine, Volume
from etcd_stack.sandbox.machines.network import NETNS_DIR, Interface, World, exists

STATE_FILE = "fleet.json"
BOOT_TIMEOUT_S = 180

Report = Callable[[str], None]


class FleetError(Exception):
    pass


@dataclass(frozen=True)
class MemberSpec:
    name: str
    address: str
    subnet: str
    hostname: str
    availability_zone: str
    role: str  # the instance profile's role, whose credentials the metadata service hands out


@dataclass(frozen=True)
class FleetPlan:
    """What the fleet needs to know of the stack, as plain values (preview/machines.py reads it from the render)."""

    region: str
    members: tuple[MemberSpec, ...]
    hosts: Mapping[str, str]  # the private zone's records
    volume_gib: int
    seed: aws.Seed
    balancer: balancer.BalancerPlan
    discovery: discovery.DiscoveryPlan | None = None  # with bootstrap `discovery`


@dataclass
class MemberState:
    name: str
    address: str
    subnet: str
    hostname: str
    availability_zone: str
    role: str
    netns: str
    host_side: str
    volume: str
    instance_home: str = ""


@dataclass
class FleetState:
    run: str
    home: str
    world: str
    endpoint: str
    members: dict[str, MemberState] = field(default_factory=dict)
    aws_pid: int = 0
    balancer_pid: int = 0
    discovery_pids: list[int] = field(default_factory=list)
    trusted_ca: str = ""  # what every instance trusts beside the system's CAs (the discovery stand-in's)

    def save(self) -> None:
        path = Path(self.home) / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(path)

    @classmethod
    def load(cls, home: Path) -> FleetState:
        try:
            raw = json.loads((Path(home) / STATE_FILE).read_text())
        except FileNotFoundError:
            raise FleetError(f"no machines in {home} (no {STATE_FILE})") from None
        members = {name: MemberState(**member) for name, member in raw.pop("members").items()}
        return cls(members=members, **raw)


def world_of(state: FleetState) -> World:
    return World(state.world)


def machine_of(member: MemberState) -> Machine:
    if not member.instance_home:
        raise FleetError(f"{member.name} has no instance")
    return Machine(Instance.load(Path(member.instance_home)))


def new_run() -> str:
    """A fleet's name: the prefix of its network namespaces and interfaces (short: an interface name has 15
    characters at most)."""
    return f"em{secrets.token_hex(3)}"


def new_instance_id() -> str:
    return f"i-{secrets.token_hex(9)[:17]}"


class Fleet:
    def __init__(self, home: Path, plan: FleetPlan, report: Report = print):
        self.home = Path(home)
        self.plan = plan
        self.report = report
        self.state = FleetState.load(self.home)

    @classmethod
    def start(cls, home: Path, plan: FleetPlan, user_data: Mapping[str, bytes], report: Report = print,
              held: Sequence[str] = (), run: str | None = None) -> Fleet:
        """Makes the world and boots every member not in `held` (those get an interface and a volume only, as an
        instance whose launch is late). Every network namespace it makes is named after `run` (new_run())."""
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        if (home / STATE_FILE).exists():
            raise FleetError(f"{home} already holds machines: `down` them first")
        run = run or new_run()
        state = FleetState(run=run, home=str(home), world=f"{run}-world", endpoint=aws.ENDPOINT)
        state.save()
        try:
            started = time.monotonic()
            base = _base(home, report)
            world = World(state.world)
            world.create(sorted({ipaddress.ip_network(m.subnet) for m in plan.members}, key=str))
            state.aws_pid = aws.start(world, home, report).pid
            state.save()
            aws.seed(world, plan.seed)
            state.balancer_pid = balancer.start(world, plan.balancer, home, report)
            state.save()
            if plan.discovery:
                state.discovery_pids, state.trusted_ca = discovery.start(world, plan.discovery, home, report)
                state.save()
            for index, spec in enumerate(plan.members):
                member = MemberState(name=spec.name, address=spec.address, subnet=spec.subnet,
                                     hostname=spec.hostname, availability_zone=spec.availability_zone, role=spec.role,
                                     netns=f"{run}-{spec.name}", host_side=f"{run}h{index}",
                                     volume=str(home / "volumes" / f"{spec.name}.img"))
                state.members[spec.name] = member
                state.save()
                _interface(world, member).create()
                Volume(Path(member.volume)).create(plan.volume_gib)
            report(f"world {state.world} ready in {time.monotonic() - started:.1f}s")
            fleet = cls(home, plan, report)
            fleet.base = base
            launched = [fleet.launch(name, user_data[name], wait=False) for name in state.members if name not in held]
            for name in launched:
                fleet.machine(name).wait_booted(BOOT_TIMEOUT_S)
            return fleet
        except BaseException:
            down(home, report)
            raise

    base: Path | None = None

    def machine(self, member: str) -> Machine:
        self.state = FleetState.load(self.home)
        return machine_of(self._member(member))

    def _member(self, name: str) -> MemberState:
        try:
            return self.state.members[name]
        except KeyError:
            raise FleetError(f"no member {name!r} in {self.home}") from None

    def launch(self, member: str, user_data: bytes, wait: bool = True) -> str:
        """A new instance of the member (a new id, a fresh root) with its interface and volume attached."""
        self.state = FleetState.load(self.home)
        state = self._member(member)
        instance_id = new_instance_id()
        instance = Instance(instance_id=instance_id, member=member, hostname=state.hostname, netns=state.netns,
                            home=str(self.home / "instances" / instance_id))
        Path(instance.home).mkdir(parents=True)
        if state.instance_home:
            _stop_metadata(Path(state.instance_home))
        # The new instance's identity and a new session of its role, as EC2 gives each instance.
        identity = metadata.Identity(instance_id=instance_id, region=self.plan.region,
                                     availability_zone=state.availability_zone, private_ip=state.address,
                                     hostname=state.hostname, role_name=state.role)
        metadata.start(state.netns, identity, metadata.Credentials.fresh(), Path(instance.home), self.report)
        state.instance_home = instance.home
        self.state.save()
        machine = Machine(instance)
        hosts = {**self.plan.hosts, **({discovery.HOST: discovery.ADDRESS} if self.plan.discovery else {})}
        machine.prepare(self.base or _base(self.home, self.report), user_data, hosts,
                        {"AWS_ENDPOINT_URL": self.state.endpoint}, self.state.trusted_ca)
        machine.boot(Volume(Path(state.volume)).attach())
        self.report(f"{member}: instance {instance_id} booting")
        if wait:
            machine.wait_booted(BOOT_TIMEOUT_S)
        return member

    def terminate(self, member: str) -> None:
        """The instance goes (a clean shutdown, then its root volume is deleted); interface and volume stay."""
        machine = self.machine(member)
        machine.stop()
        machine.release()
        machine.discard()
        # Its metadata service ends with it.
        _stop_metadata(machine.instance.directory)

    def replace(self, member: str, user_data: bytes, blank_volume: bool = False) -> str:
        """What `pulumi up` does to a member whose instance is replaced: terminate, then launch from the new
        user_data; `blank_volume` stands for a lost data volume (a new, empty one in its place)."""
        self.terminate(member)
        if blank_volume:
            volume = Volume(Path(self._member(member).volume))
            volume.detach()
            volume.image.unlink()
            volume.create(self.plan.volume_gib)
        self.launch(member, user_data)
        return self.machine(member).instance.instance_id


def _base(home: Path, report: Report) -> Path:
    """The root file system, unpacked once per fleet: every instance boots an overlay of it."""
    base = home / "base"
    if not (base / "etc/os-release").exists():
        started = time.monotonic()
        shutil.rmtree(base, ignore_errors=True)
        rootfs.unpack(rootfs.ensure(report), base)
        report(f"root file system unpacked in {time.monotonic() - started:.1f}s")
    return base


def _interface(world: World, member: MemberState) -> Interface:
    return Interface(world=world, netns=member.netns, host_side=member.host_side,
                     address=ipaddress.ip_address(member.address), subnet=ipaddress.ip_network(member.subnet))


def _stop_metadata(instance_home: Path) -> None:
    """The instance's metadata service, from the pid file it keeps in the instance's directory."""
    metadata.stop_from(instance_home / metadata.PID_FILE)


def down(home: Path, report: Report = print) -> None:
    """Tears down everything the fleet in `home` made, trying every step even when one fails; raises naming
    what is left."""
    home = Path(home)
    try:
        state = FleetState.load(home)
    except FleetError:
        return
    failures: list[str] = []

    def attempt(what: str, step: Callable[[], Any]) -> None:
        try:
            step()
        except Exception as error:
            failures.append(f"{what}: {error}")

    for instance_home in sorted((home / "instances").glob("*")) if (home / "instances").exists() else []:
        # Started before the instance's record is written: stopped whether or not the record is there.
        attempt(f"stopping the metadata service of {instance_home.name}", lambda h=instance_home: _stop_metadata(h))
        try:
            instance = Instance.load(instance_home)
        except (OSError, ValueError):
            continue
        machine, which = Machine(instance), f"{instance.member} ({instance.instance_id})"
        attempt(f"stopping {which}", machine.stop)
        attempt(f"releasing {which}", machine.release)
    if state.aws_pid:
        attempt("stopping the AWS stand-in", lambda: processes.stop_pid(state.aws_pid))
    if state.balancer_pid:
        attempt("stopping the load balancer", lambda: processes.stop_pid(state.balancer_pid))
    for pid in state.discovery_pids:
        attempt("stopping the discovery service", lambda p=pid: processes.stop_pid(p))
    world = world_of(state)
    for member in state.members.values():
        attempt(f"removing {member.name}'s interface", _interface(world, member).destroy)
        attempt(f"detaching {member.name}'s volume", Volume(Path(member.volume)).detach)
    attempt("removing the world", world.destroy)
    left = [name for name in [state.world, *(m.netns for m in state.members.values())] if exists(name)]
    if left:
        failures.append(f"namespaces left in {NETNS_DIR}: {', '.join(left)}")
    if not failures:
        (home / STATE_FILE).unlink(missing_ok=True)
        with_cgroups = CGROUP_ROOT.exists() and not any(CGROUP_ROOT.iterdir())
        if with_cgroups:
            CGROUP_ROOT.rmdir()
        report(f"machines in {home} are down")
        return
    raise FleetError(f"tearing down {home} left: " + "; ".join(failures))


"""A client that keeps writing while members come and go: what the scenario tests and benchmarks watch."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import requests

from etcd_stack.sandbox.cluster import Sandbox
from etcd_stack.sandbox.gateway import GatewayError


@dataclass
class Writer:
    """Puts w/000001, w/000002, ... through any member that answers; remembers what was acknowledged."""

    box: Sandbox
    acknowledged: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    # Per key, the rounds over every member that failed before one acknowledged it.
    retries: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    # How long one put may take before the writer tries the next member.
    request_timeout: float = 2.0

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        gateway = self.box.gateway(timeout=self.request_timeout)
        sequence = 0
        try:
            while not self.stop.is_set() and sequence < 100_000:
                sequence += 1
                key = f"w/{sequence:06d}"
                while not self.stop.is_set() and not self._put(gateway, key):
                    self.failures += 1
                    self.retries[key] = self.retries.get(key, 0) + 1
                    time.sleep(0.05)
        finally:
            gateway.close()

    def _put(self, gateway, key: str) -> bool:
        for member in self.box.members:
            try:
                gateway.put(member.ip, key, key)
            except (requests.RequestException, GatewayError):
                continue
            self.acknowledged[key] = time.monotonic()
            return True
        return False

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def longest_pause(self, since: float = float("-inf")) -> float:
        """The longest time between two acknowledged writes, counting pauses that end after `since`."""
        times = sorted(self.acknowledged.values())
        return max((b - a for a, b in itertools.pairwise(times) if b > since), default=0.0)

    def acknowledged_after(self, moment: float) -> int:
        return sum(1 for at in list(self.acknowledged.values()) if at > moment)

    def wait_for_writes_after(self, moment: float, count: int = 10, timeout_s: float = 20) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.acknowledged_after(moment) >= count:
                return min(at for at in self.acknowledged.values() if at > moment) - moment
            time.sleep(0.05)
        raise TimeoutError(f"writes did not resume within {timeout_s}s")

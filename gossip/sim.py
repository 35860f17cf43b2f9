"""Deterministic simulation of a cluster of `SwimCore`s on a `MemoryNetwork`, in virtual time.

No trio and no real clock: a discrete-event loop pops whichever comes first, a network delivery or a
member's `next_deadline()`, so a minute of cluster life for 50 members takes about a second of CPU.
Used by the simulation tests and by ``bench/gossip_sim.py``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .config import GossipConfig
from .core import SwimCore
from .members import EventKind
from .memory import MemoryNetwork
from .wire import Address, Keyring, MemberState, Metadata


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One membership event seen by `observer` about `subject` at virtual time `at`."""

    at: float
    observer: str
    subject: str
    kind: EventKind


class Simulation:
    """`n` members named m0..m{n-1}; m0 is everybody's seed. Join happens at t = 0..0.1 s."""

    def __init__(
        self,
        n: int,
        config: GossipConfig,
        *,
        seed: int = 0,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.0005, 0.002),
        secret: bytes | None = b"simulated cluster secret",
        zones: Mapping[str, str] | None = None,
    ) -> None:
        """``n`` members m0..m{n-1}; ``zones`` gives a member's ``Metadata.zone`` by name."""
        self.config = config
        self.zones = dict(zones or {})
        self.network = MemoryNetwork(seed=seed, loss=loss, delay=delay)
        self.now = 0.0
        self.observations: list[Observation] = []
        self.cores: dict[Address, SwimCore] = {}
        self.names: dict[str, Address] = {}
        self.killed: set[Address] = set()
        self.stalled_until: dict[Address, float] = {}
        self._heap: list[tuple[float, int, Address]] = []
        self._order = 0
        rng = random.Random(seed)
        self._join_times: list[tuple[float, Address]] = []
        for i in range(n):
            addr = (f"10.0.{i // 250}.{i % 250 + 1}", 7946)
            core = SwimCore(
                config,
                name=f"m{i}",
                address=addr,
                now=0.0,
                rng=random.Random(rng.getrandbits(64)),
                keyring=Keyring.from_secret(secret),
                metadata=Metadata(zone=self.zones.get(f"m{i}", "")),
            )
            self.cores[addr] = core
            self.names[core.name] = addr
            self._join_times.append((0.1 * i / max(1, n), addr))
        # Restarted members draw from this, never from `hash()` (salted per process): a run is a pure
        # function of its seed under any PYTHONHASHSEED.
        self._restart_rng = random.Random(rng.getrandbits(64))
        self.seed_address = next(iter(self.cores))
        for at, addr in self._join_times:
            self._push(at, addr)
        self._joined: set[Address] = set()

    # ------------------------------------------------------------------------------------ control

    def address(self, name: str) -> Address:
        return self.names[name]

    def kill(self, name: str) -> None:
        """Crash member `name`: from now on it neither sends, receives nor ticks."""
        self.killed.add(self.names[name])

    def restart(self, name: str) -> None:
        """Start killed member `name` again as a new process: same name and address, fresh state
        (incarnation 0, knowing nobody), rejoining through the seed (or m1 when it is the seed)."""
        addr = self.names[name]
        old = self.cores[addr]
        self.cores[addr] = SwimCore(
            self.config,
            name=name,
            address=addr,
            now=self.now,
            rng=random.Random(self._restart_rng.getrandbits(64)),
            keyring=old.keyring,
            metadata=Metadata(zone=self.zones.get(name, "")),
        )
        self.killed.discard(addr)
        self._joined.discard(addr)
        self._push(self.now, addr)

    def stall(self, name: str, duration: float) -> None:
        """Freeze member `name` for `duration` seconds: datagrams to it are lost and it does not tick."""
        addr = self.names[name]
        self.stalled_until[addr] = self.now + duration
        self._push(self.now + duration, addr)

    def live(self) -> list[SwimCore]:
        return [c for a, c in self.cores.items() if a not in self.killed]

    def converged(self) -> bool:
        """Return True when every live member sees exactly the live members as alive."""
        live = {c.name for c in self.live()}
        for core in self.live():
            alive = {m.name for m in core.members() if m.state == MemberState.ALIVE}
            if alive != live:
                return False
        return True

    def run_until(
        self, end: float, *, stop: Callable[[], bool] | None = None, check_every: float = 0.1
    ) -> bool:
        """Advance virtual time to `end`, or until `stop()` (checked every `check_every` s) returns True.

        Returns True if stopped by `stop`.
        """
        next_check = self.now
        while True:
            if stop is not None and self.now >= next_check:
                if stop():
                    return True
                next_check = self.now + check_every
            t_net = self.network.next_delivery()
            t_core = self._heap[0][0] if self._heap else math.inf
            t = min(t_net, t_core, next_check if stop is not None else math.inf)
            if t > end:
                self.now = end
                return False
            self.now = max(self.now, t)
            if t_net <= t_core and t_net == t:
                d = self.network.pop_due(t)
                assert d is not None
                core = self.cores.get(d.dst)
                if core is None or not self._accepts(d.dst):
                    continue
                core.receive(t, d.src, d.data, stream=d.stream)
                self._after(core)
            elif t_core == t:
                _, _, addr = heapq.heappop(self._heap)
                self._tick(addr)

    # ---------------------------------------------------------------------------------- internals

    def _accepts(self, addr: Address) -> bool:
        if addr in self.killed or addr not in self._joined:
            return False
        return self.stalled_until.get(addr, -1.0) <= self.now

    def _push(self, at: float, addr: Address) -> None:
        self._order += 1
        heapq.heappush(self._heap, (at, self._order, addr))

    def _tick(self, addr: Address) -> None:
        core = self.cores[addr]
        if addr in self.killed:
            return
        if addr not in self._joined:
            self._joined.add(addr)
            if addr != self.seed_address:
                core.join(self.now, [self.seed_address])
            elif len(self.names) > 1:
                core.join(self.now, [a for a in self.cores if a != addr][:1])
            self._after(core)
            return
        until = self.stalled_until.get(addr)
        if until is not None:
            if until > self.now:
                return  # a push at `until` is already queued
            del self.stalled_until[addr]
        if self.now < core.next_deadline():
            return  # a stale heap entry; the real deadline is queued too
        core.tick(self.now)
        self._after(core)

    def _after(self, core: SwimCore) -> None:
        for out in core.outgoing():
            self.network.send(self.now, core.address, out.dst, out.data, stream=out.stream)
        for ev in core.events():
            self.observations.append(
                Observation(at=self.now, observer=core.name, subject=ev.member.name, kind=ev.kind)
            )
        self._push(core.next_deadline(), core.address)

    # ------------------------------------------------------------------------------------ figures

    def first_seen(self, subject: str, kind: EventKind, *, after: float = 0.0) -> dict[str, float]:
        """Return, per observer, the first time it reported `kind` about `subject` at or after `after`."""
        seen: dict[str, float] = {}
        for o in self.observations:
            if o.subject == subject and o.kind == kind and o.at >= after and o.observer not in seen:
                seen[o.observer] = o.at
        return seen

    def false_deaths(self, *, after: float = 0.0) -> list[Observation]:
        """Return dead events, at or after `after`, about members that were never killed."""
        killed = {self.cores[a].name for a in self.killed}
        return [
            o
            for o in self.observations
            if o.kind == EventKind.DEAD and o.at >= after and o.subject not in killed
        ]

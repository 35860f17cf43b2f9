"""`MemoryNetwork`: an in-memory, seeded network with loss, delay, partitions, and trio transports.

It serves two masters. The deterministic simulator (`sim.py`) drives it in virtual time with `send`,
`next_delivery` and `pop_due`, no trio involved. Trio code gets a `MemoryTransport` per address from
`open_transport`, implementing the same `Transport` protocol as UDP/TCP, on trio's clock (so a
`MockClock` makes it virtual too). Datagrams may be lost; streams are never lost but a partition
blocks both.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from .transport import Received
from .wire import Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    at: float
    src: Address
    dst: Address
    data: bytes
    stream: bool


@dataclass(slots=True, kw_only=True)
class NetworkStats:
    sent_packets: int = 0
    sent_bytes: int = 0
    lost: int = 0  # dropped by random loss
    blocked: int = 0  # dropped by a partition
    delivered: int = 0


class MemoryNetwork:
    """A seeded in-memory network. `loss` is the datagram loss probability, `delay` a (min, max) seconds
    uniform one-way delay; `partition(groups)` blocks traffic between groups until `heal()`."""

    def __init__(self, *, seed: int = 0, loss: float = 0.0, delay: tuple[float, float] = (0.0, 0.0)) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if not 0.0 <= delay[0] <= delay[1]:
            raise ValueError("delay must be (min, max) with 0 <= min <= max")
        self.loss = loss
        self.delay = delay
        self.stats = NetworkStats()
        self.bytes_by_source: dict[Address, int] = {}
        self._rng = random.Random(seed)
        self._group_of: dict[Address, int] | None = None
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = 0
        self._endpoints: dict[Address, MemoryTransport] = {}
        self._next_port = 1

    # ----------------------------------------------------------------------------------- topology

    def partition(self, groups: Iterable[Iterable[Address]]) -> None:
        """Cut the network into `groups`; an address in no group can reach no one."""
        self._group_of = {addr: i for i, group in enumerate(groups) for addr in group}

    def heal(self) -> None:
        """Remove any partition."""
        self._group_of = None

    def reachable(self, src: Address, dst: Address) -> bool:
        """Return True unless a partition separates `src` from `dst`."""
        if self._group_of is None:
            return True
        g = self._group_of.get(src)
        return g is not None and g == self._group_of.get(dst)

    # ------------------------------------------------------------------------------ pure interface

    def send(self, now: float, src: Address, dst: Address, data: bytes, *, stream: bool = False) -> bool:
        """Schedule `data` from `src` to `dst`; return False if it was lost or blocked."""
        self.stats.sent_packets += 1
        self.stats.sent_bytes += len(data)
        self.bytes_by_source[src] = self.bytes_by_source.get(src, 0) + len(data)
        if not self.reachable(src, dst):
            self.stats.blocked += 1
            return False
        if not stream and self.loss and self._rng.random() < self.loss:
            self.stats.lost += 1
            return False
        lo, hi = self.delay
        at = now + (self._rng.uniform(lo, hi) if hi > lo else lo)
        delivery = Delivery(at=at, src=src, dst=dst, data=data, stream=stream)
        endpoint = self._endpoints.get(dst)
        if endpoint is not None:
            endpoint._schedule(delivery)
        else:
            self._order += 1
            heapq.heappush(self._queue, (at, self._order, delivery))
        return True

    def next_delivery(self) -> float:
        """Return when the next queued delivery is due (inf if none)."""
        return self._queue[0][0] if self._queue else math.inf

    def pop_due(self, now: float) -> Delivery | None:
        """Return the next delivery due at or before `now`, if any."""
        if self._queue and self._queue[0][0] <= now:
            self.stats.delivered += 1
            return heapq.heappop(self._queue)[2]
        return None

    # ------------------------------------------------------------------------------- trio interface

    @asynccontextmanager
    async def open_transport(self, address: Address) -> AsyncIterator[MemoryTransport]:
        """Attach a trio transport at `address` (port 0 picks a free one) for the duration of the block."""
        host, port = address
        if port == 0:  # never reuse a port, as a kernel would not right away
            while (host, self._next_port) in self._endpoints:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        addr = (host, port)
        if addr in self._endpoints:
            raise OSError(f"address {addr} already in use")
        endpoint = MemoryTransport(self, addr)
        self._endpoints[addr] = endpoint
        try:
            yield endpoint
        finally:
            del self._endpoints[addr]
            endpoint._closed = True


class MemoryTransport:
    """A `Transport` on a `MemoryNetwork`, timed by trio's clock."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self._address = address
        self._inbox: list[tuple[float, int, Delivery]] = []
        self._order = 0
        self._wake = trio.Event()
        self._closed = False

    @property
    def local_address(self) -> Address:
        return self._address

    def _schedule(self, delivery: Delivery) -> None:
        self._order += 1
        heapq.heappush(self._inbox, (delivery.at, self._order, delivery))
        self._wake.set()

    async def send_packet(self, dst: Address, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._network.send(trio.current_time(), self._address, dst, data)

    async def send_stream(self, dst: Address, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if dst not in self._network._endpoints:
            raise OSError(f"connection refused by {dst}")
        if not self._network.send(trio.current_time(), self._address, dst, data, stream=True):
            raise OSError(f"{dst} unreachable")

    async def receive(self) -> Received:
        while True:
            if self._closed:
                raise trio.ClosedResourceError
            now = trio.current_time()
            if self._inbox and self._inbox[0][0] <= now:
                d = heapq.heappop(self._inbox)[2]
                self._network.stats.delivered += 1
                return Received(src=d.src, data=d.data, stream=d.stream)
            self._wake = trio.Event()
            with trio.move_on_at(self._inbox[0][0] if self._inbox else math.inf):
                await self._wake.wait()

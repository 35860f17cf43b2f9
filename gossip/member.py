"""The trio driver: `open_member` runs a `SwimCore` over a `Transport`.

Two loops feed the core: one receives datagrams and stream messages, one sleeps until
`core.next_deadline()` (woken early when a receive may have moved it). After each, the core's
outgoing messages are sent and its events are logged and handed to subscribers.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
import trio

from .config import GossipConfig
from .core import Counters, Outgoing, SwimCore
from .members import EventKind, MemberEvent, MemberInfo
from .memory import MemoryNetwork
from .transport import Transport, open_udp_tcp_transport
from .wire import Address, Keyring, MemberState, Metadata

log = structlog.get_logger("gossip")


class Member:
    """A running gossip member. Obtain one with `open_member`."""

    def __init__(self, core: SwimCore, transport: Transport, nursery: trio.Nursery) -> None:
        self._core = core
        self._transport = transport
        self._nursery = nursery
        self._wakeup = trio.Event()
        self._subscribers: list[trio.MemorySendChannel[MemberEvent]] = []
        self._leave_sent = trio.Event()  # set once the leave rumour has left the queue

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def address(self) -> Address:
        """Return the bound (and advertised) address; the real port even when bound to port 0."""
        return self._core.address

    @property
    def config(self) -> GossipConfig:
        return self._core.config

    @property
    def counters(self) -> Counters:
        """Return traffic counters, including dropped bad/unauthenticated/oversized packets."""
        return self._core.counters

    @property
    def awareness(self) -> int:
        """Return the Lifeguard local health score (0 = healthy)."""
        return self._core.awareness

    @property
    def keyring(self) -> Keyring:
        """Return the keyring; install/use/remove keys on it to rotate the cluster secret."""
        return self._core.keyring

    @property
    def incarnation(self) -> int:
        return self._core.incarnation

    def members(self) -> list[MemberInfo]:
        """Return every known member (this one included) with its state: alive, suspect, dead or left."""
        return self._core.members()

    def alive(self) -> list[MemberInfo]:
        """Return the members currently alive (this one included)."""
        return [m for m in self._core.members() if m.state == MemberState.ALIVE]

    def events(self) -> trio.MemoryReceiveChannel[MemberEvent]:
        """Return a new async iterator of membership events (joined, suspect, alive, dead, left, updated),
        starting now. Close it when done."""
        send, receive = trio.open_memory_channel[MemberEvent](math.inf)
        self._subscribers.append(send)
        return receive

    async def update_metadata(self, metadata: Metadata | None = None, **changes: Any) -> None:
        """Publish new metadata (a whole `Metadata`, or field changes such as ``load=0.5``).

        Raises `LocalProtocolError` if the result is larger than `MAX_METADATA_BYTES`.
        """
        current = self._core.member(self.name)
        assert current is not None
        new = metadata if metadata is not None else dataclasses.replace(current.metadata, **changes)
        self._core.update_metadata(trio.current_time(), new)
        log.info("member.metadata_updated", name=self.name, incarnation=self._core.incarnation)
        await self._flush()

    async def leave(self) -> None:
        """Announce a graceful leave, and give the rumour up to `leave_propagate_time` to spread."""
        self._core.leave(trio.current_time())
        log.info("member.leaving", name=self.name)
        await self._flush()
        with trio.move_on_after(self.config.leave_propagate_time):
            await self._leave_sent.wait()

    # ------------------------------------------------------------------------------------- internals

    async def _flush(self) -> None:
        if self._core.has_left and not self._core.pending_rumours():
            self._leave_sent.set()
        for out in self._core.outgoing():
            if out.stream:
                self._nursery.start_soon(self._send_stream, out)
            else:
                await self._transport.send_packet(out.dst, out.data)
        for event in self._core.events():
            m = event.member
            log.info(f"member.{event.kind.value}", name=m.name, incarnation=m.incarnation, address=m.address)
            for channel in list(self._subscribers):
                try:
                    channel.send_nowait(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.remove(channel)

    async def _send_stream(self, out: Outgoing) -> None:
        try:
            await self._transport.send_stream(out.dst, out.data)
        except (OSError, trio.TooSlowError) as exc:
            log.debug("member.push_pull_failed", peer=out.dst, error=repr(exc))

    async def _receive_loop(self) -> None:
        while True:
            received = await self._transport.receive()
            before = self._core.counters.dropped
            self._core.receive(trio.current_time(), received.src, received.data, stream=received.stream)
            if self._core.counters.dropped != before:
                drop = self._core.last_drop
                log.warning("packet.dropped", peer=received.src, reason=drop.reason if drop else None)
            self._wakeup.set()
            await self._flush()

    async def _timer_loop(self) -> None:
        while True:
            with trio.move_on_at(self._core.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._core.tick(trio.current_time())
            await self._flush()


def _transport_cm(
    config: GossipConfig, bind: Address, network: MemoryNetwork | None
) -> AbstractAsyncContextManager[Transport]:
    if network is not None:
        return network.open_transport(bind)
    return open_udp_tcp_transport(bind[0], bind[1], stream_timeout=config.stream_timeout)


@asynccontextmanager
async def open_member(
    config: GossipConfig,
    *,
    bind: Address = ("127.0.0.1", 0),
    seeds: Sequence[Address] = (),
    name: str | None = None,
    metadata: Metadata | None = None,
    keyring: Keyring | None = None,
    secret: str | bytes | None = None,
    network: MemoryNetwork | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Member]:
    """Run a member for the duration of the ``async with`` block and yield it.

    It binds `bind` (port 0 picks a free port; see `Member.address`), on UDP+TCP, or on `network` if a
    `MemoryNetwork` is given; it joins through `seeds`, which are re-contacted while not known alive.
    Packets are authenticated with `keyring`, or with a key derived from `secret`. The name defaults to
    ``host:port``. Leaving the block without `leave()` stops the member abruptly, like a crash.
    """
    ring = keyring if keyring is not None else Keyring.from_secret(secret)
    async with _transport_cm(config, bind, network) as transport, trio.open_nursery() as nursery:
        address = transport.local_address
        core = SwimCore(
            config,
            name=name or f"{address[0]}:{address[1]}",
            address=address,
            now=trio.current_time(),
            rng=rng if rng is not None else random.Random(),
            metadata=metadata,
            keyring=ring,
        )
        member = Member(core, transport, nursery)
        log.info("member.started", name=core.name, address=address)
        core.join(trio.current_time(), list(seeds))
        await member._flush()
        nursery.start_soon(member._receive_loop)
        nursery.start_soon(member._timer_loop)
        try:
            yield member
        finally:
            nursery.cancel_scope.cancel()
            for channel in member._subscribers:
                channel.close()


__all__ = ["EventKind", "Member", "open_member"]

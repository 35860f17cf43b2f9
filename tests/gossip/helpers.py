"""Helpers for unit tests of the pure core: build cores and pass packets between them by hand."""

from __future__ import annotations

import random

from gossip.config import GossipConfig
from gossip.core import Outgoing, SwimCore
from gossip.members import EventKind
from gossip.wire import Address, Alive, Keyring, MemberState, Message, Metadata, decode_packet

KEYRING = Keyring.from_secret("unit test secret")


def address(i: int) -> Address:
    return (f"10.0.0.{i}", 7946)


def make_core(i: int = 0, *, config: GossipConfig | None = None, now: float = 0.0) -> SwimCore:
    return SwimCore(
        config or GossipConfig.lan(),
        name=f"m{i}",
        address=address(i),
        now=now,
        rng=random.Random(i),
        keyring=KEYRING,
    )


def add_alive(core: SwimCore, i: int, *, incarnation: int = 0, now: float = 0.0) -> None:
    core.on_alive(now, Alive(name=f"m{i}", address=address(i), incarnation=incarnation, metadata=Metadata()))


def state_of(core: SwimCore, name: str) -> tuple[MemberState, int] | None:
    m = core.member(name)
    return None if m is None else (m.state, m.incarnation)


def kinds(core: SwimCore) -> list[tuple[EventKind, str]]:
    return [(e.kind, e.member.name) for e in core.events()]


def decode_all(out: list[Outgoing]) -> list[Message]:
    msgs: list[Message] = []
    for o in out:
        msgs.extend(decode_packet(KEYRING, o.data, max_bytes=10**7))
    return msgs


def exchange(cores: dict[Address, SwimCore], now: float, *, rounds: int = 20) -> None:
    """Deliver every outgoing packet between `cores` instantly until nothing is left to send."""
    for _ in range(rounds):
        moved = False
        for core in list(cores.values()):
            for o in core.outgoing():
                dst = cores.get(o.dst)
                if dst is not None:
                    dst.receive(now, core.address, o.data, stream=o.stream)
                    moved = True
        if not moved:
            return

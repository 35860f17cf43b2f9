"""Placement: where channel logs and connection copies live, computed from the cluster map.

Every daemon derives the same answers from the same map (DESIGN section 3):

- channel home    = first active frontend in the channel's rendezvous order;
- channel replica = first in that order in a zone other than the home's;
- connection secondary = first in the connection id's rendezvous order in a zone
  other than the owner's.

Rendezvous (highest-random-weight) hashing moves only the keys whose first
choice joined or left. Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@functools.lru_cache(maxsize=1 << 16)
def weight(node_id: str, key: str) -> int:
    """The rendezvous weight of ``node_id`` for ``key`` (64-bit, stable across processes)."""
    digest = hashlib.blake2b(f"{node_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` by descending weight for ``key``; ties (never in practice) by id."""
    return sorted(nodes, key=lambda n: (-weight(n, key), n))


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """One daemon as the cluster map shows it."""

    node_id: str
    role: str  # "frontend" or "router"
    zone: str
    client_addr: str = ""  # host:port clients (and routers) connect to
    peer_addr: str = ""  # host:port of the frontend peer link
    admin_addr: str = ""  # host:port of the admin listener, "" when admin surfaces share client_addr
    alive: bool = True  # alive or suspect in gossip; False once dead or left
    active: bool = True  # False while draining
    load: float = 0.0
    incarnation: int = 0
    status: str = "alive"  # alive | suspect | dead | left, for display


@dataclass(frozen=True, slots=True)
class ClusterView:
    """An immutable cluster map. Build a new one on every membership change."""

    peers: Mapping[str, Peer] = field(default_factory=dict)

    def frontends(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.role == "frontend"]

    def active_frontends(self) -> list[Peer]:
        return [p for p in self.frontends() if p.alive and p.active]

    def alive(self, node_id: str) -> bool:
        p = self.peers.get(node_id)
        return p is not None and p.alive

    def serving(self, node_id: str) -> bool:
        """Alive and not draining: may take new work."""
        p = self.peers.get(node_id)
        return p is not None and p.alive and p.active and p.role == "frontend"

    def zone_of(self, node_id: str) -> str | None:
        p = self.peers.get(node_id)
        return p.zone if p is not None else None

    def with_peer(self, peer: Peer) -> ClusterView:
        peers = dict(self.peers)
        peers[peer.node_id] = peer
        return ClusterView(peers)


class Placement:
    """Placement decisions over one ClusterView."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self._active = [p.node_id for p in view.active_frontends()]
        self._orders: dict[str, list[str]] = {}  # channel -> its rendezvous order over _active

    def channel_order(self, channel: str) -> list[str]:
        order = self._orders.get(channel)
        if order is None:
            if len(self._orders) >= 4096:
                self._orders.clear()  # a bound: one placement serves one map, most for seconds
            order = self._orders[channel] = rendezvous_order(channel, self._active)
        return list(order)

    def channel_home(self, channel: str) -> str | None:
        order = self.channel_order(channel)
        return order[0] if order else None

    def channel_replica(self, channel: str) -> str | None:
        """First frontend after the home in another zone; None if there is no other zone."""
        order = self.channel_order(channel)
        if not order:
            return None
        return self._first_other_zone(order[1:], self.view.zone_of(order[0]))

    def replica_for(self, channel: str, holder: str) -> str | None:
        """Where ``holder``'s copy of ``channel`` should live while it holds the log.

        The same as ``channel_replica`` when ``holder`` is the home; during a hand-over, when the
        map already names another home, it is still never ``holder`` itself.
        """
        order = [n for n in self.channel_order(channel) if n != holder]
        return self._first_other_zone(order, self.view.zone_of(holder))

    def other_zone_known(self, node: str) -> bool:
        """Whether the map holds a frontend (alive, suspect or dead; not one that left) in a zone other
        than ``node``'s. Then a copy must live in another zone before anything is acknowledged: a map
        that merely lost sight of the other zone (a zone partition) must not let each side ACK alone."""
        zone = self.view.zone_of(node)
        return any(p.zone != zone and p.status != "left" for p in self.view.frontends())

    def connection_secondary(self, connection_id: str, owner: str) -> str | None:
        """Where the copy of ``connection_id``'s state lives, for an owner in its zone."""
        order = rendezvous_order(connection_id, [n for n in self._active if n != owner])
        return self._first_other_zone(order, self.view.zone_of(owner))

    def least_loaded(self, exclude: Iterable[str] = ()) -> str | None:
        """The active frontend with the least load (ties by id), for a new connection."""
        skip = set(exclude)
        candidates = [p for p in self.view.active_frontends() if p.node_id not in skip]
        if not candidates:
            return None
        return min(candidates, key=lambda p: (p.load, p.node_id)).node_id

    def _first_other_zone(self, order: list[str], zone: str | None) -> str | None:
        for node in order:
            if self.view.zone_of(node) != zone:
                return node
        return None

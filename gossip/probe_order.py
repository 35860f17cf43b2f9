"""The order in which one member probes the others (SWIM's round-robin), as a small pure object.

Theory of operation
-------------------
SWIM probes one member per probe interval, walking a shuffled list of the live members and
reshuffling at the end of each pass, so every live member is probed within two passes. A member that
joins is inserted at a random place among those not yet probed in this pass.

Zone-mates first. Members that share a failure domain (``Metadata.zone``) tend to fail together: a
zone's network is cut or its power lost. When a member becomes suspect, the other live members of its
zone are moved to the front of the pass, so that a lost zone is suspected as a whole within about
two probe intervals instead of whenever the pass reaches its last member (up to N intervals, longer
once Lifeguard scales them). A zone that is fine answers those probes, and nothing else changes.
``kernel.membership.silent_zones`` waits for every member of a zone to be suspect, so this is what
bounds the time to see a zone lost (bench/gossip_sim.py ``zone_loss``). The rng is the member's own,
drawn in the same order as before, so a run stays a pure function of its seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from .members import MemberRecord
from .wire import MemberState

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


class ProbeOrder:
    def __init__(self, rng: random.Random, me: str) -> None:
        self._rng = rng
        self._me = me  # never probed
        self._order: list[str] = []  # this pass's targets; those before ``_index`` are done
        self._index = 0

    def add(self, name: str) -> None:
        """A member joined (or came back): probe it somewhere in the rest of this pass."""
        if name == self._me:
            return
        self._order.insert(self._rng.randint(self._index, len(self._order)), name)

    def first(self, names: Iterable[str]) -> None:
        """Probe ``names`` next, ahead of the rest of this pass (each once)."""
        ahead = [n for n in names if n != self._me]
        rest = [n for n in self._order[self._index :] if n not in ahead]
        self._order[self._index :] = ahead + rest

    def next(self, members: Mapping[str, MemberRecord]) -> str | None:
        """The next live member to probe, or None when there is none."""
        for _ in range(2):
            while self._index < len(self._order):
                name = self._order[self._index]
                self._index += 1
                rec = members.get(name)
                if rec is not None and rec.state in _LIVE and name != self._me:
                    return name
            order = [n for n, r in members.items() if r.state in _LIVE and n != self._me]
            self._rng.shuffle(order)
            self._order, self._index = order, 0
        return None


def zone_mates(members: Mapping[str, MemberRecord], suspect: MemberRecord, me: str) -> list[str]:
    """The alive members of ``suspect``'s zone other than it and us, by name; none without a zone."""
    zone = suspect.metadata.zone
    if not zone:
        return []
    return sorted(
        n
        for n, r in members.items()
        if r.state == MemberState.ALIVE and r.metadata.zone == zone and n not in (me, suspect.name)
    )

"""Membership records, the rumour precedence rule, Lifeguard suspicions and the rumour queue.

These are the pieces of the SWIM core (`core.py`) that are rules rather than plumbing; each has unit tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from . import formulas
from .wire import Address, Alive, Dead, MemberState, Metadata, Rumour, Suspect


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """A snapshot of one member as the local member sees it."""

    name: str
    address: Address
    incarnation: int
    state: MemberState
    metadata: Metadata
    since: float  # local time of the last state change


@dataclass(slots=True, kw_only=True)
class MemberRecord:
    """The mutable entry the core keeps per member (itself included)."""

    name: str
    address: Address
    incarnation: int
    state: MemberState
    metadata: Metadata
    since: float

    def snapshot(self) -> MemberInfo:
        return MemberInfo(
            name=self.name,
            address=self.address,
            incarnation=self.incarnation,
            state=self.state,
            metadata=self.metadata,
            since=self.since,
        )


class EventKind(StrEnum):
    """Membership changes reported to the application."""

    JOINED = "joined"  # a new member, or one back from dead/left
    SUSPECT = "suspect"
    ALIVE = "alive"  # a suspect member refuted the suspicion
    DEAD = "dead"
    LEFT = "left"
    UPDATED = "updated"  # an alive member changed its metadata or address


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEvent:
    kind: EventKind
    member: MemberInfo
    at: float  # local time the change was seen


class Verdict(Enum):
    IGNORE = "ignore"  # stale or redundant
    APPLY = "apply"  # change the record and re-broadcast the rumour
    CONFIRM = "confirm"  # another member independently suspects an already-suspect member
    REFUTE = "refute"  # a rumour about the local member that it must contradict


def precedence(current: MemberRecord | None, rumour: Rumour, *, local_name: str) -> Verdict:
    """Decide what a rumour does to the record it is about: the single SWIM precedence rule.

    Incarnations order rumours about one member; only that member ever raises its own incarnation.
    - About the local member: a suspect or dead rumour at our incarnation or above, or an alive rumour
      above it (a stale claim from an earlier life), is REFUTED by raising our incarnation past it;
      anything older is ignored.
    - Alive(i) applies to an unknown member or when i is above the record's incarnation. An equal
      incarnation never revives a suspect or dead member: only the member itself can, by refuting.
    - Suspect(i) applies to an alive member when i >= its incarnation; on a suspect member it is a
      CONFIRMATION (Lifeguard counts independent ones); it never touches dead, left or unknown members.
    - Dead(i) applies when i >= the incarnation of a member not yet dead; on a dead member only a
      graceful leave (by == name) applies, turning dead into left. Left is final for that incarnation.
    """
    if rumour.name == local_name:
        if current is None:
            return Verdict.IGNORE
        if isinstance(rumour, Alive):
            return Verdict.REFUTE if rumour.incarnation > current.incarnation else Verdict.IGNORE
        return Verdict.REFUTE if rumour.incarnation >= current.incarnation else Verdict.IGNORE
    if isinstance(rumour, Alive):
        if current is None or rumour.incarnation > current.incarnation:
            return Verdict.APPLY
        return Verdict.IGNORE
    if current is None or rumour.incarnation < current.incarnation:
        return Verdict.IGNORE
    if isinstance(rumour, Suspect):
        if current.state == MemberState.ALIVE:
            return Verdict.APPLY
        if current.state == MemberState.SUSPECT:
            return Verdict.CONFIRM
        return Verdict.IGNORE
    assert isinstance(rumour, Dead)
    if current.state in (MemberState.ALIVE, MemberState.SUSPECT):
        return Verdict.APPLY
    if current.state == MemberState.DEAD and rumour.by == rumour.name:
        return Verdict.APPLY
    return Verdict.IGNORE


@dataclass(slots=True, kw_only=True)
class Suspicion:
    """A running suspicion of one member (Lifeguard's dynamic suspicion timeout).

    It started at `start`, raised by `first`. Each further *distinct* member that suspects it is a
    confirmation, up to `k`; the deadline moves from `start + maximum` toward `start + minimum` as
    `remaining_suspicion_time` says. With Lifeguard off, `maximum == minimum` and `k == 0`.
    """

    start: float
    first: str
    k: int
    minimum: float
    maximum: float
    confirmers: set[str] = field(default_factory=set)
    deadline: float = 0.0
    verdict_at: float = math.inf  # another member declared it dead: ours follows by then, unrefuted
    last_call: bool = False  # the suspect was pinged with the suspicion one probe interval before

    def __post_init__(self) -> None:
        self._recompute()

    def _recompute(self) -> None:
        remaining = formulas.remaining_suspicion_time(
            len(self.confirmers), self.k, 0.0, self.minimum, self.maximum
        )
        self.deadline = min(self.start + remaining, self.verdict_at)

    def last_call_due(self, now: float, lead: float) -> bool:
        """Whether the suspect's last-call ping (``lead`` before the deadline) is due now; true once."""
        if self.last_call or self.deadline - lead > now:
            return False
        self.last_call = True
        return True

    def verdict(self, at: float) -> None:
        """Another member declared the suspect dead: unless it refutes, declare it too by ``at``."""
        self.verdict_at = min(self.verdict_at, at)
        self._recompute()

    def confirm(self, by: str) -> bool:
        """Count `by` as a confirmation; return True if it was new (and so is worth re-broadcasting)."""
        if len(self.confirmers) >= self.k or by == self.first or by in self.confirmers:
            return False
        self.confirmers.add(by)
        self._recompute()
        return True


@dataclass(slots=True)
class _Queued:
    data: bytes
    transmits: int
    order: int


class RumourQueue:
    """Rumours waiting to be piggybacked, at most one per member (a newer one replaces the older).

    `take` prefers rumours sent the fewest times, newest first, and drops a rumour once it has been sent
    `limit` times (memberlist's TransmitLimitedQueue).
    """

    def __init__(self) -> None:
        self._items: dict[str, _Queued] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._items)

    def enqueue(self, name: str, data: bytes) -> None:
        """Queue encoded rumour `data` about member `name`, invalidating any older rumour about it."""
        self._order += 1
        self._items[name] = _Queued(data, 0, self._order)

    def take(self, budget: int, limit: int) -> list[bytes]:
        """Return rumours whose total size fits `budget` bytes, counting one transmission of each."""
        if not self._items:
            return []
        picked: list[bytes] = []
        ordered = sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for name, item in ordered:
            if budget < 8:
                break
            if len(item.data) > budget:
                continue
            budget -= len(item.data)
            picked.append(item.data)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[name]
        return picked

    def transmits(self, name: str) -> int | None:
        """Return how many times the queued rumour about `name` was sent, or None if none is queued."""
        item = self._items.get(name)
        return None if item is None else item.transmits

"""Connection-state copies, handover tombstones: the data side of takeover.

Theory of operation
-------------------
A connection's owner writes its state (``Session.to_wire``: ids, identity,
per-channel cursors and modes) to its *secondary*, a frontend in another zone,
on create, attach, detach and clientId change; cursors follow in batches. The
client's own channelSerials make a stale cursor harmless.

A frontend that receives a resume for a connection it does not own takes it
over: it asks the owner to hand the state over (the owner closes its transports
and leaves a *tombstone* naming the new owner and epoch), or, if the owner is
unreachable, fetches the secondary's copy. The new owner bumps the ownership
epoch, and every write carries it: a copy or a session with a lower epoch is
stale and is dropped when a higher one is seen (``discard``). A tombstone
answers a repeated handover idempotently and keeps a stale key from taking the
connection back (no ping-pong). Pure: times come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Copy:
    state: dict[str, Any]
    epoch: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Tombstone:
    new_owner: str | None  # None: the client closed the connection (CLOSE); nobody may take it
    epoch: int  # the epoch the new owner holds
    state: dict[str, Any] | None  # what was handed over, for an idempotent repeat
    until_ms: int


class SessionCopies:
    """The copies this frontend holds as a secondary, expiring after ``ttl_ms`` without a write."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self._copies: dict[str, Copy] = {}

    def __len__(self) -> int:
        return len(self._copies)

    def put(self, now_ms: int, state: dict[str, Any]) -> bool:
        """Store a copy unless we hold a newer epoch. Returns whether it was taken."""
        conn_id = str(state["id"])
        epoch = int(state["epoch"])
        held = self._copies.get(conn_id)
        if held is not None and held.epoch > epoch:
            return False
        self._copies[conn_id] = Copy(state, epoch, now_ms)
        return True

    def get(self, now_ms: int, conn_id: str) -> dict[str, Any] | None:
        held = self._copies.get(conn_id)
        if held is None or held.updated_ms + self.ttl_ms <= now_ms:
            return None
        return held.state

    def discard(self, conn_id: str, below_epoch: int) -> None:
        held = self._copies.get(conn_id)
        if held is not None and held.epoch < below_epoch:
            del self._copies[conn_id]

    def drop(self, conn_id: str) -> None:
        self._copies.pop(conn_id, None)

    def expire(self, now_ms: int) -> None:
        for conn_id in [c for c, v in self._copies.items() if v.updated_ms + self.ttl_ms <= now_ms]:
            del self._copies[conn_id]


class Tombstones:
    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self._stones: dict[str, Tombstone] = {}

    def add(
        self, now_ms: int, conn_id: str, new_owner: str | None, epoch: int, state: dict[str, Any] | None
    ) -> None:
        self._stones[conn_id] = Tombstone(new_owner, epoch, state, now_ms + self.ttl_ms)

    def get(self, now_ms: int, conn_id: str) -> Tombstone | None:
        stone = self._stones.get(conn_id)
        if stone is None or stone.until_ms <= now_ms:
            return None
        return stone

    def drop(self, conn_id: str) -> None:
        self._stones.pop(conn_id, None)

    def expire(self, now_ms: int) -> None:
        for conn_id in [c for c, t in self._stones.items() if t.until_ms <= now_ms]:
            del self._stones[conn_id]

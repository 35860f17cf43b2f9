"""Session: one client connection's state, which outlives its transports.

Theory of operation
-------------------
A Session is what a connection *is* between transports: its id and key, who it
is (Identity), its flags, and per attached channel a *cursor* (the last serial
sent to it) plus the modes it asked for and those granted. It never holds messages: a detached
session's size is O(attached channels), whatever traffic flows meanwhile
(DESIGN invariant 6). Messages live once, in the channel logs.

Lifecycle::

    ACTIVE --transport lost / DISCONNECT--> DETACHED --resume--> ACTIVE
    ACTIVE|DETACHED --CLOSE--> CLOSED           (terminal, state disposed)
    DETACHED --ttl elapsed--> EXPIRED           (terminal)

A session in a terminal state refuses further input (poisoned, never half
updated).

Each bind of a transport starts a new *transport generation*. Channel traffic
is delivered on a transport only after that channel's ATTACHED was sent on it
(PROTOCOL 9.1 item 6): ``ChannelCursor.attached_gen`` records which generation
that was.

Publishes are ACKed in msgSerial arrival order (RTN7, ``messagequeue.ts``
removes from the head), even when their channels complete out of order:
``PendingAcks`` releases only a contiguous completed prefix.

Pure: times come in as arguments.
"""

from __future__ import annotations

import enum
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from frontend.auth import Identity
from frontend.presence_set import OwnMembers
from kernel.errors import ErrorInfo

# How many numbered publishes a session remembers for re-sends (a client re-sends only those it has
# no ACK for, at most its unacknowledged window).
NUMBERED_KEPT = 1024
REFUSED_KEPT = 128  # of them, the refused ones a copy of the session carries


class SessionState(enum.Enum):
    ACTIVE = "active"
    DETACHED = "detached"
    CLOSED = "closed"
    EXPIRED = "expired"


class SessionPoisoned(Exception):
    """Input arrived for a session in a terminal state."""


@dataclass(slots=True)
class ChannelCursor:
    modes: int  # the modes granted: those asked for that the capability allows
    serial: str | None  # the last channelSerial sent (or acknowledged by ATTACHED) on this channel
    attached_gen: int = -1  # transport generation on which ATTACHED was last sent
    requested: int = 0  # the modes asked for at attach, granted anew when a reauth widens the capability


@dataclass(slots=True)
class _Pending:
    msg_serial: int
    added_ms: int = 0  # when the publish arrived, for the publish->ACK histogram
    count: int = 1
    serials: list[str] | None = None
    error: ErrorInfo | None = None
    done: bool = False


class PendingAcks:
    """Publishes awaiting completion, released as in-order ACK/NACK runs."""

    def __init__(self) -> None:
        self._queue: deque[_Pending] = deque()
        self._released_added: list[int] = []  # added_ms of what release() popped since last taken

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, msg_serial: int, now_ms: int = 0) -> _Pending:
        item = _Pending(msg_serial, now_ms)
        self._queue.append(item)
        return item

    @staticmethod
    def complete(item: _Pending, serials: list[str] | None = None, error: ErrorInfo | None = None) -> None:
        item.serials = serials
        item.error = error
        item.done = True

    def take_released_times(self) -> list[int]:
        """When each publish answered by ``release`` since the last call arrived (``added_ms``)."""
        taken, self._released_added = self._released_added, []
        return taken

    def release(self) -> list[tuple[int, int, list[dict[str, Any]] | None, ErrorInfo | None]]:
        """Pop the completed head as runs: ``(msgSerial, count, res | None, error | None)``.

        Consecutive ACKs merge into one run (one ``res`` entry per message);
        each NACK is its own run.
        """
        runs: list[tuple[int, int, list[dict[str, Any]] | None, ErrorInfo | None]] = []
        q = self._queue
        while q and q[0].done:
            item = q.popleft()
            self._released_added.append(item.added_ms)
            if item.error is not None:
                runs.append((item.msg_serial, 1, None, item.error))
                continue
            res = {"serials": item.serials or []}
            if runs and runs[-1][3] is None and runs[-1][0] + runs[-1][1] == item.msg_serial:
                start, count, prev, _ = runs[-1]
                assert prev is not None
                prev.append(res)
                runs[-1] = (start, count + 1, prev, None)
            else:
                runs.append((item.msg_serial, 1, [res], None))
        return runs


@dataclass(slots=True, kw_only=True)
class Session:
    connection_id: str
    key: str
    epoch: int
    identity: Identity
    client_id: str | None
    echo: bool = True
    created_ms: int
    secondary: str | None = None  # the frontend holding this state's copy (another zone)
    # After a takeover: the key it replaced, which the same client may still present if the
    # CONNECTED carrying the new key never reached it, until the client shows it has the new
    # key (any frame on a transport bound since, or a resume with it).
    replaced_key: str | None = None
    key_confirmed: bool = True
    dirty: bool = False  # cursors moved since the copy was last written
    state: SessionState = SessionState.ACTIVE
    detached_ms: int | None = None
    resumed_ms: int | None = None  # when the last resume bound a transport, for the catch-up histogram
    generation: int = 0
    channels: dict[str, ChannelCursor] = field(default_factory=dict)
    acks: PendingAcks = field(default_factory=PendingAcks)
    # msgSerial -> serials of this connection's numbered publishes (the last NUMBERED_KEPT): a
    # re-sent one is answered from here for as long as the session lives, even after the home's
    # dedupe record, kept for the retention window from its numbering, has aged out.
    # A publish refused for certain (NACKed) is kept too, as its error: a client that missed the NACK
    # while it was being moved re-sends it, and numbering it then could put it after its later ones.
    numbered: dict[int, list[str] | ErrorInfo] = field(default_factory=dict)
    # The highest msgSerial received, and after a takeover the previous owner's: a re-send at or
    # below it may still be in flight there (its outcome is unknown here: never NACKed early).
    msg_serial_seen: int = -1
    resent_upto: int = -1
    # Taken over from a copy (its owner did not hand it over): what that owner saw is unknown, so
    # its publishes keep the deadline rule (never refused early: frontend.sim seed 13).
    from_copy: bool = False
    presence: OwnMembers = field(default_factory=OwnMembers)  # members it entered (presence.py)

    @property
    def terminal(self) -> bool:
        return self.state in (SessionState.CLOSED, SessionState.EXPIRED)

    def _check(self) -> None:
        if self.terminal:
            raise SessionPoisoned(f"session {self.connection_id} is {self.state.value}")

    def bind(self, now_ms: int) -> int:
        """A transport took this session; returns its new generation."""
        self._check()
        self.state = SessionState.ACTIVE
        self.detached_ms = None
        self.generation += 1
        # A new transport must re-ATTACH before channel traffic flows on it.
        self.acks = PendingAcks()
        return self.generation

    def unbind(self, now_ms: int) -> None:
        """The transport went away; state is kept for the TTL."""
        if self.terminal or self.state is SessionState.DETACHED:
            return
        self.state = SessionState.DETACHED
        self.detached_ms = now_ms

    def close(self) -> None:
        self.state = SessionState.CLOSED
        self.channels.clear()

    def expires_at(self, ttl_ms: int) -> int | None:
        if self.state is SessionState.DETACHED and self.detached_ms is not None:
            return self.detached_ms + ttl_ms
        return None

    def expire(self) -> None:
        self.state = SessionState.EXPIRED
        self.channels.clear()

    def delivering(self, channel: str) -> ChannelCursor | None:
        """The cursor if channel traffic may flow on the current transport."""
        cur = self.channels.get(channel)
        if cur is not None and cur.attached_gen == self.generation and self.state is SessionState.ACTIVE:
            return cur
        return None

    def state_size(self) -> int:
        """Bytes held by this session's own state (object graph, not shared logs)."""
        size = sys.getsizeof(self) + sys.getsizeof(self.channels) + len(self.connection_id) + len(self.key)
        for name, cur in self.channels.items():
            size += sys.getsizeof(name) + sys.getsizeof(cur) + sys.getsizeof(cur.serial or "")
        size += sys.getsizeof(self.numbered) + sum(sys.getsizeof(v) for v in self.numbered.values())
        return size + sum(sys.getsizeof(p) for p in self.acks._queue)

    def remember_numbered(self, msg_serial: int, serials: list[str] | ErrorInfo) -> None:
        """Keep a numbered publish's serials (or a refused one's error) for a re-send of its
        msgSerial (bounded)."""
        self.numbered[msg_serial] = serials
        if isinstance(serials, ErrorInfo):
            self.dirty = True  # the copy keeps refusals (``to_wire``): a new owner answers re-sends too
        while len(self.numbered) > NUMBERED_KEPT:
            del self.numbered[next(iter(self.numbered))]  # the oldest (msgSerials only grow)

    def saw_publish(self, msg_serial: int) -> str | None:
        """Note a publish's msgSerial; ``"uncertain"`` if the owner that handed the connection over
        saw it (it may still be numbering it), ``"patient"`` if what an earlier owner saw is unknown
        (taken over from a copy), else None."""
        self.msg_serial_seen = max(self.msg_serial_seen, msg_serial)
        if msg_serial <= self.resent_upto:
            return "uncertain"
        return "patient" if self.from_copy else None

    def to_wire(self) -> dict[str, Any]:
        """The state a secondary keeps and a new owner restores (cursors, not messages)."""
        ident = self.identity
        return {
            "id": self.connection_id,
            "epoch": self.epoch,
            "key_name": ident.key_name,
            "client_id": self.client_id,
            "ident_client_id": ident.client_id,
            "capability": {k: sorted(v) for k, v in ident.capability.items()},
            "expires": ident.expires_ms,
            "issued": ident.issued_ms,
            "revocation_key": ident.revocation_key,
            "echo": self.echo,
            "created": self.created_ms,
            "seen": max(self.msg_serial_seen, self.resent_upto),
            # The last refusals: a re-send of one after a takeover gets the same NACK, never a number
            # after the connection's later publishes (frontend.sim --witness seed 478).
            "refused": [[m, e.to_wire()] for m, e in self.numbered.items() if isinstance(e, ErrorInfo)][
                -REFUSED_KEPT:
            ],
            "channels": {name: [cur.modes, cur.serial, cur.requested] for name, cur in self.channels.items()},
            "presence": self.presence.to_wire() if self.presence or self.presence.pending else None,
        }

    @classmethod
    def from_wire(
        cls, raw: dict[str, Any], *, key: str, epoch: int, secondary: str | None, now_ms: int
    ) -> Session:
        """Rebuild a detached session from a copy, under a new key and ownership epoch."""
        ident = Identity(
            str(raw["key_name"]),
            raw.get("ident_client_id"),
            {k: frozenset(v) for k, v in dict(raw["capability"]).items()},
            raw.get("expires"),
            issued if isinstance(issued := raw.get("issued"), int) else None,
            rkey if isinstance(rkey := raw.get("revocation_key"), str) else None,
        )
        s = cls(
            connection_id=str(raw["id"]),
            key=key,
            epoch=epoch,
            identity=ident,
            client_id=raw.get("client_id"),
            echo=bool(raw.get("echo", True)),
            created_ms=int(raw.get("created", now_ms)),
            secondary=secondary,
            state=SessionState.DETACHED,
            detached_ms=now_ms,
        )
        s.presence = OwnMembers.from_wire(raw.get("presence"))
        s.resent_upto = seen if isinstance(seen := raw.get("seen"), int) else -1
        s.from_copy = bool(raw.get("from_copy"))
        for item in raw.get("refused") or ():
            error = ErrorInfo.from_wire(item[1]) if isinstance(item, list) and len(item) == 2 else None
            if error is not None and isinstance(item[0], int):
                s.numbered[item[0]] = error
        for name, entry in dict(raw.get("channels") or {}).items():
            # [modes, serial, requested]; a copy from before ``requested`` was kept has two.
            modes, serial = int(entry[0]), entry[1]
            requested = int(entry[2]) if len(entry) > 2 else modes
            s.channels[name] = ChannelCursor(modes, serial, requested=requested)
        return s

    def may_publish_as(self, client_id: str | None) -> bool:
        """RSL1m: a message's clientId must match the connection's, unless wildcard."""
        if client_id is None or client_id == self.client_id or self.client_id == "*":
            return True
        # An unidentified connection on basic (key) auth may name any clientId.
        return self.client_id is None and self.identity.expires_ms is None

"""Session: one client connection's state, which outlives its transports.

Theory of operation
-------------------
A Session is what a connection *is* between transports: its id and key, who it
is (Identity), its flags, and per attached channel a *cursor* (the last serial
sent to it) plus the modes it asked for and those granted. It never holds messages: a detached
session's size is O(attached channels), whatever traffic flows meanwhile
(DESIGN invariant 6). Messages live once, in the channel logs.

A detached session is *parked* (``park``): its cursors are packed into one flat tuple of
(interned name, serial, packed modes) and its empty ACK queue and member table are dropped, so it
holds no per-channel object (under 1 KiB with 10 channels, ``state_size``); ``channels``
unpacks them on first use, and the copy for the secondary reads them packed (``cursor_items``).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from frontend.auth import Identity
from frontend.presence_set import OwnMembers
from kernel.errors import ErrorInfo

# How many numbered publishes a session remembers for re-sends (a client re-sends only those it has
# no ACK for, at most its unacknowledged window).
NUMBERED_KEPT = 1024
REFUSED_KEPT = 128  # of them, the refused ones a copy of the session carries


def _holders_of_one() -> int:
    """What ``sys.getrefcount`` says, from inside ``_share``, of an object held once."""
    held = ["".join(("cali", "brate"))]

    def probe(obj: object) -> int:
        return sys.getrefcount(obj)

    return probe(held[0])


_EXTRA_REFS = _holders_of_one() - 1  # the references the call itself adds


def _share(obj: object) -> float:
    """``obj``'s size divided among its holders (small ints and None are shared by everyone)."""
    return sys.getsizeof(obj) / max(1, sys.getrefcount(obj) - _EXTRA_REFS)


# Mode values, one object each: a parked cursor's ints (bit 16 and up, not in CPython's small-int
# cache) are then shared by every session instead of 28 bytes apiece.
_SHARED_INTS: dict[int, int] = {}


def _shared_int(value: int) -> int:
    if len(_SHARED_INTS) < 4096:
        return _SHARED_INTS.setdefault(value, value)
    return _SHARED_INTS.get(value, value)


# A parked cursor's granted and requested modes, packed in one int (mode flags are 32-bit).
_REQUESTED_SHIFT = 32
_MODES_MASK = (1 << _REQUESTED_SHIFT) - 1


def _parked_cursors(flat: tuple[Any, ...]) -> Iterator[tuple[str, str | None, int, int]]:
    """``(name, serial, modes, requested)`` from a parked tuple of ``(name, serial, packed modes)``."""
    for i in range(0, len(flat), 3):
        modes = flat[i + 2]
        yield flat[i], flat[i + 1], modes & _MODES_MASK, modes >> _REQUESTED_SHIFT


# What a parked session that never published holds as ``numbered``: one empty dict for all of them
# (64 B apiece otherwise). Only ``remember_numbered`` writes ``numbered``, and it replaces this first.
_NOTHING_NUMBERED: dict[int, list[str] | ErrorInfo] = {}


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
    """Publishes awaiting completion, released as in-order ACK/NACK runs.

    The queue exists only while something is pending or was lately: an idle or detached
    connection holds no deque (``trim``)."""

    __slots__ = ("_queue", "_released_added")

    def __init__(self) -> None:
        self._queue: deque[_Pending] | None = None
        self._released_added: list[int] | None = None  # added_ms of what release() popped since taken

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def add(self, msg_serial: int, now_ms: int = 0) -> _Pending:
        item = _Pending(msg_serial, now_ms)
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        return item

    def state_size(self) -> int:
        queue = self._queue
        size = sys.getsizeof(self) + (sys.getsizeof(queue) if queue is not None else 0)
        return size + sum(sys.getsizeof(p) for p in queue or ())

    def trim(self) -> None:
        """Drop the empty queue's storage (a deque holds a 64-slot block even when empty)."""
        if not self._queue:
            self._queue = None
        if not self._released_added:
            self._released_added = None

    @staticmethod
    def complete(item: _Pending, serials: list[str] | None = None, error: ErrorInfo | None = None) -> None:
        item.serials = serials
        item.error = error
        item.done = True

    def take_released_times(self) -> list[int]:
        """When each publish answered by ``release`` since the last call arrived (``added_ms``)."""
        taken, self._released_added = self._released_added, None
        return taken or []

    def release(self) -> list[tuple[int, int, list[dict[str, Any]] | None, ErrorInfo | None]]:
        """Pop the completed head as runs: ``(msgSerial, count, res | None, error | None)``.

        Consecutive ACKs merge into one run (one ``res`` entry per message);
        each NACK is its own run.
        """
        runs: list[tuple[int, int, list[dict[str, Any]] | None, ErrorInfo | None]] = []
        q = self._queue
        if not q or not q[0].done:
            return runs
        released = self._released_added
        if released is None:
            released = self._released_added = []
        while q and q[0].done:
            item = q.popleft()
            released.append(item.added_ms)
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


_NO_ACKS = PendingAcks()  # a parked session's, when nothing is pending (see ``park``)


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
    # Per attached channel its cursor; None while parked (``park``): then ``_parked`` holds them
    # packed, and ``channels`` unpacks them on first use.
    _cursors: dict[str, ChannelCursor] | None = field(default_factory=dict, init=False, repr=False)
    _parked: tuple[Any, ...] = field(default=(), init=False, repr=False)
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
    def channels(self) -> dict[str, ChannelCursor]:
        """Per attached channel, its cursor (a parked session's are unpacked here, on first use)."""
        cursors = self._cursors
        if cursors is None:
            cursors = self._cursors = {
                name: ChannelCursor(modes, serial, -1, requested)
                for name, serial, modes, requested in _parked_cursors(self._parked)
            }
            self._parked = ()
        return cursors

    def cursor_items(self) -> Iterator[tuple[str, str | None, int, int]]:
        """``(name, serial, modes, requested)`` per attached channel, without unpacking a parked session."""
        if self._cursors is None:
            yield from _parked_cursors(self._parked)
        else:
            for name, cur in self._cursors.items():
                yield name, cur.serial, cur.modes, cur.requested

    def park(self) -> None:
        """Pack a detached session's cursors into one flat tuple, and drop its empty ACK queue.

        Nothing is lost: a detached session's cursors are not attached on any transport (the next
        bind starts a new generation, so ``attached_gen`` does not matter), and the names, serials
        and mode values are shared with every other session holding the same ones (interned names,
        the log's serial strings, ``_shared_int``). ``channels`` unpacks on first use."""
        if self.state is not SessionState.DETACHED:
            return
        if not self.acks:
            # Nothing pending: the shared empty queue (48 B apiece otherwise). Only a transport's
            # input adds to ``acks``, and ``bind`` gives every transport a fresh one first.
            self.acks = _NO_ACKS
        else:
            self.acks.trim()
        self.presence.trim()
        if not self.numbered:
            self.numbered = _NOTHING_NUMBERED  # shared, never written: remember_numbered replaces it
        cursors = self._cursors
        if cursors is None:
            return
        flat: list[Any] = []
        for name, cur in cursors.items():
            flat += (name, cur.serial, _shared_int(cur.modes | cur.requested << _REQUESTED_SHIFT))
        self._parked = tuple(flat)
        self._cursors = None

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

    def _forget_channels(self) -> None:
        self._cursors = {}
        self._parked = ()

    def close(self) -> None:
        self.state = SessionState.CLOSED
        self._forget_channels()

    def expires_at(self, ttl_ms: int) -> int | None:
        if self.state is SessionState.DETACHED and self.detached_ms is not None:
            return self.detached_ms + ttl_ms
        return None

    def expire(self) -> None:
        self.state = SessionState.EXPIRED
        self._forget_channels()

    def delivering(self, channel: str) -> ChannelCursor | None:
        """The cursor if channel traffic may flow on the current transport."""
        cur = self.channels.get(channel)
        if cur is not None and cur.attached_gen == self.generation and self.state is SessionState.ACTIVE:
            return cur
        return None

    def state_size(self) -> int:
        """Bytes held by this session's own state (its object graph, not the shared logs).

        Its id, key and timestamps count in full. What sessions share (an interned channel name, a
        log's serial string, the Identity of an API key, a mode value) counts like a proportional
        set size: its size divided by its holders, so the sum over sessions is what they hold."""
        size: float = sys.getsizeof(self)
        # Its own, whoever else points at them (the node's indexes of this session): in full.
        for own in (self.connection_id, self.key, self.replaced_key, self.created_ms, self.detached_ms):
            size += sys.getsizeof(own) if own is not None else 0
        for value in (self.client_id, self.secondary, self.epoch, self.resumed_ms, self.generation):
            size += _share(value)
        size += _share(self.identity) + _share(self.identity.key_name) + _share(self.identity.capability)
        if self._cursors is None:
            parked = self._parked
            size += sys.getsizeof(parked)
            for i in range(len(parked)):
                size += _share(parked[i])
        else:
            cursors = self._cursors
            size += sys.getsizeof(cursors)
            for name, cur in cursors.items():
                size += _share(name) + sys.getsizeof(cur) + _share(cur.serial) + _share(cur.modes)
                size += _share(cur.requested) + _share(cur.attached_gen)
        acks = self.acks
        size += acks.state_size() if acks is not _NO_ACKS else 0
        if self.numbered is not _NOTHING_NUMBERED:
            size += sys.getsizeof(self.numbered) + sum(sys.getsizeof(v) for v in self.numbered.values())
        size += sys.getsizeof(self.presence)
        if self.presence:
            size += sys.getsizeof(self.presence.channels)
        if self.presence.has_pending():
            size += sys.getsizeof(self.presence.pending)
        return round(size)

    def remember_numbered(self, msg_serial: int, serials: list[str] | ErrorInfo) -> None:
        """Keep a numbered publish's serials (or a refused one's error) for a re-send of its
        msgSerial (bounded)."""
        if self.numbered is _NOTHING_NUMBERED:
            self.numbered = {}
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
            "channels": {name: [modes, serial, req] for name, serial, modes, req in self.cursor_items()},
            "presence": self.presence.to_wire() if self.presence or self.presence.has_pending() else None,
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
            s.channels[sys.intern(str(name))] = ChannelCursor(modes, serial, requested=requested)
        s.park()
        return s

    def may_publish_as(self, client_id: str | None) -> bool:
        """RSL1m: a message's clientId must match the connection's, unless wildcard."""
        if client_id is None or client_id == self.client_id or self.client_id == "*":
            return True
        # An unidentified connection on basic (key) auth may name any clientId.
        return self.client_id is None and self.identity.expires_ms is None

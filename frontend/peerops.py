"""The typed peer protocol: one frozen record per operation between frontends.

Theory of operation
-------------------
A frame on a peer link (``peerwire``) names an operation and carries its
arguments as a msgpack map. Those maps are turned into the records below once,
at the edge (``decode``, called by the link driver, ``PeerBus``, or by the
simulation's memory bus); a map that does not fit its record raises
``RemoteProtocolError``, which the edge counts and drops (a request is answered
``Refusal.BAD_REQUEST``). Everything past the edge sees only records, and
dispatches on them with ``match``.

A failed request is answered with a ``Refused`` record: a ``Refusal`` code and
a reason for the logs. The code is the decision input, never the text: a
publish refused with one of ``NOT_EXECUTED`` was certainly not numbered (its
publisher may be NACKed at the deadline); any other failure (the link was lost
or the request timed out after it left) leaves the outcome unknown, so it is
retried, deduplicated by the home. A publish that was answered carries a
``PublishReply`` whose ``Outcome`` is NUMBERED (with serials) or REFUSED (with
the Ably error to NACK with).

Adding an operation: write a frozen record with an ``OP`` name (never reuse
one), its fields (new fields get defaults, so an older peer's map still
decodes), ``to_args`` and a ``from_args`` classmethod that validates with the
helpers below, list it in ``_RECORDS`` and in the ``PeerOp`` union, then add a
``case`` where it is handled (``ChannelService.handle_request``/``handle_push``
for channel operations, ``Ownership`` for connection state). Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from frontend.channel_log import Entry
from kernel.errors import ErrorInfo, RemoteProtocolError
from kernel.protocol import Message


class Refusal(enum.IntEnum):
    """Why a peer request failed. The numbers are the protocol: append only."""

    NOT_HOME = 1  # the receiver is not the channel's home in its map
    ACQUIRING = 2  # the receiver is acquiring the channel's home, or cannot yet
    MAP_LAGS = 3  # the sender is not in the receiver's map yet
    CHANGED_HOME = 4  # numbered, but the home stepped down before its replica acknowledged it
    STALE = 5  # a replica refuses a stale home's log (the home then steps down)
    RESYNC = 6  # a replica cannot install an entry: send the whole log
    NOT_REPLICA = 7  # the receiver holds the home itself
    BEHIND = 8  # the home is behind the serial asked for (it steps down)
    BAD_REQUEST = 9  # the request did not decode (counted and dropped)
    UNSENT = 10  # local: there was no link, the request never left
    LOST = 11  # local: the link was lost or the request timed out after it left
    BAD_REPLY = 12  # local: the reply did not decode
    OUT_OF_ORDER = 13  # the publish it must follow (``Publish.after``) is not numbered yet
    BLOCKED = 14  # the home can place no copy (zone quorum): it did not take the publish in


# Failures after which the operation was certainly not executed by the receiver.
NOT_EXECUTED = frozenset(
    {
        Refusal.NOT_HOME,
        Refusal.ACQUIRING,
        Refusal.MAP_LAGS,
        Refusal.UNSENT,
        Refusal.OUT_OF_ORDER,
        Refusal.BLOCKED,
    }
)


@dataclass(frozen=True, slots=True)
class Refused:
    code: Refusal
    reason: str

    def to_wire(self) -> list[Any]:
        return [int(self.code), self.reason]

    @classmethod
    def from_wire(cls, raw: Any) -> Refused:
        if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], str):
            try:
                return cls(Refusal(raw[0]), raw[1])
            except ValueError:
                pass
        return cls(Refusal.BAD_REPLY, f"undecodable failure {raw!r:.80}")


class Outcome(enum.IntEnum):
    """What became of one attempt at a publish, as its sender sees it."""

    NUMBERED = 1  # the home numbered it (and its replica holds it): ACK with the serials
    REFUSED = 2  # the home refused it for certain (never numbered, or cut): NACK with the error
    NOT_NUMBERED = 3  # it was certainly not numbered (not home, link never there): retry or NACK
    UNKNOWN = 4  # it may have been numbered: retry, deduplicated, and never NACK


@dataclass(frozen=True, slots=True)
class PublishReply:
    outcome: Outcome  # NUMBERED or REFUSED
    serials: tuple[str, ...] = ()
    error: ErrorInfo | None = None

    def to_wire(self) -> list[Any]:
        if self.outcome is Outcome.NUMBERED:
            return [int(Outcome.NUMBERED), list(self.serials)]
        return [int(Outcome.REFUSED), self.error.to_wire() if self.error else None]


def publish_outcome(ok: bool, result: Any) -> PublishReply:
    """Classify the answer to a ``Publish`` request (``ok, result`` as the bus reports it)."""
    if not ok:
        code = result.code if isinstance(result, Refused) else Refusal.LOST
        return PublishReply(Outcome.NOT_NUMBERED if code in NOT_EXECUTED else Outcome.UNKNOWN)
    if isinstance(result, list) and len(result) == 2:
        if result[0] == Outcome.NUMBERED and isinstance(result[1], list):
            return PublishReply(Outcome.NUMBERED, tuple(str(s) for s in result[1]))
        if result[0] == Outcome.REFUSED:
            return PublishReply(Outcome.REFUSED, error=ErrorInfo.from_wire(result[1]))
    return PublishReply(Outcome.UNKNOWN)


# -- field checks (each raises RemoteProtocolError) ---------------------------------------------


def _str(args: Mapping[str, Any], name: str) -> str:
    v = args.get(name)
    if not isinstance(v, str):
        raise RemoteProtocolError(f"peer op needs string {name!r}")
    return v


def _opt_str(args: Mapping[str, Any], name: str) -> str | None:
    v = args.get(name)
    if v is not None and not isinstance(v, str):
        raise RemoteProtocolError(f"peer op field {name!r} must be a string or nil")
    return v


def _int(args: Mapping[str, Any], name: str, default: int | None = None) -> int:
    v = args.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise RemoteProtocolError(f"peer op needs integer {name!r}")
    return v


def _dict(args: Mapping[str, Any], name: str) -> dict[str, Any]:
    v = args.get(name)
    if not isinstance(v, dict):
        raise RemoteProtocolError(f"peer op needs map {name!r}")
    return v


def _entry(args: Mapping[str, Any], name: str = "entry") -> Entry:
    return _entry_of(args.get(name))


def _entry_of(raw: Any) -> Entry:
    if (
        not isinstance(raw, list)
        or len(raw) != 6
        or not all(isinstance(x, int) for x in raw[:3])
        or not isinstance(raw[3], dict)
        or not isinstance(raw[3].get("channelSerial"), str)
        # A message entry carries ``messages``; a presence entry (channel_log.py) ``presence``.
        or not isinstance(raw[3].get("messages", raw[3].get("presence")), list)
        or (raw[4] is not None and not isinstance(raw[4], str))
        or (raw[5] is not None and not isinstance(raw[5], int))
    ):
        raise RemoteProtocolError("peer op needs a log entry")
    return Entry.from_wire(raw)


def _snapshot(args: Mapping[str, Any]) -> dict[str, Any]:
    snap = _dict(args, "log")
    entries = snap.get("entries")
    if not isinstance(snap.get("epoch"), str) or not isinstance(entries, list):
        raise RemoteProtocolError("peer op needs a log snapshot")
    _int(snap, "floor")
    _int(snap, "last_seq")
    for name in ("committed", "ahead_seq", "newer_epoch_born"):  # optional (channel_log.py)
        if snap.get(name) is not None:
            _int(snap, name)
    for raw in entries:
        _entry_of(raw)
    return snap


# -- channel operations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """One client publish on its way to the channel's home: the value a publish travels as."""

    OP: ClassVar[str] = "publish"
    channel: str
    connection_id: str
    msg_serial: int
    messages: list[Message]  # stamped (TM2)
    envelope: dict[str, Any]  # the MESSAGE ProtocolMessage's own fields
    # The msgSerial of this connection's latest earlier publish on the channel whose outcome the
    # sender does not know yet: the home numbers this one only after that one (publisher order).
    after: int | None = None

    def to_args(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "conn": self.connection_id,
            "msg_serial": self.msg_serial,
            "messages": self.messages,
            "envelope": self.envelope,
            "after": self.after,
        }

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Publish:
        messages = a.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise RemoteProtocolError("publish needs a list of messages")
        return cls(
            channel=_str(a, "channel"),
            connection_id=_str(a, "conn"),
            msg_serial=_int(a, "msg_serial"),
            messages=messages,
            envelope=_dict(a, "envelope"),
            after=None if a.get("after") is None else _int(a, "after"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Attach:
    OP: ClassVar[str] = "attach"
    channel: str
    from_serial: str | None = None  # the client's channelSerial: replay after it
    subscribe: bool = True  # also (re)join the sender's stream
    stream_from: str | None = None  # the sender's stream cursor: catch the stream up from it

    def to_args(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "from": self.from_serial,
            "subscribe": self.subscribe,
            "stream_from": self.stream_from,
        }

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Attach:
        return cls(
            channel=_str(a, "channel"),
            from_serial=_opt_str(a, "from") or None,
            subscribe=bool(a.get("subscribe", True)),
            stream_from=_opt_str(a, "stream_from") or None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFetch:
    OP: ClassVar[str] = "log_fetch"
    channel: str

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> LogFetch:
        return cls(channel=_str(a, "channel"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Replicate:
    OP: ClassVar[str] = "replicate"
    channel: str
    entry: Entry
    # The home's last committed (fanned out) seq when it sent this: what the copy knows was seen.
    committed: int | None = None

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel, "entry": self.entry.to_wire(), "committed": self.committed}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Replicate:
        committed = None if a.get("committed") is None else _int(a, "committed")
        return cls(channel=_str(a, "channel"), entry=_entry(a), committed=committed)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaSync:
    OP: ClassVar[str] = "replica_sync"
    channel: str
    log: dict[str, Any]  # ChannelLog.snapshot()

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel, "log": self.log}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> ReplicaSync:
        return cls(channel=_str(a, "channel"), log=_snapshot(a))


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """Push: the home fans an entry out to a frontend whose stream follows the channel."""

    OP: ClassVar[str] = "deliver"
    channel: str
    entry: Entry

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel, "entry": self.entry.to_wire()}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Deliver:
        return cls(channel=_str(a, "channel"), entry=_entry(a))


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyReleased:
    """Push from a home to a frontend of its own zone it copied to while degraded: a frontend of
    another zone now holds the log up to ``last_seq`` of ``epoch``, so that copy no longer holds
    entries only this zone has (it stops keeping the zone's place at the witness, kernel/quorum.py)."""

    OP: ClassVar[str] = "copy_released"
    channel: str
    epoch: str
    last_seq: int

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel, "epoch": self.epoch, "last_seq": self.last_seq}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> CopyReleased:
        return cls(channel=_str(a, "channel"), epoch=_str(a, "epoch"), last_seq=_int(a, "last_seq"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Take:
    """Push: a draining home asks the channel's next home to acquire it now."""

    OP: ClassVar[str] = "take"
    channel: str

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Take:
        return cls(channel=_str(a, "channel"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    """Push: the sender's stream no longer follows the channel."""

    OP: ClassVar[str] = "unsubscribe"
    channel: str

    def to_args(self) -> dict[str, Any]:
        return {"channel": self.channel}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Unsubscribe:
        return cls(channel=_str(a, "channel"))


# -- connection-state operations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPut:
    """Request or push: store a connection's state copy (``Session.to_wire``)."""

    OP: ClassVar[str] = "session_put"
    state: dict[str, Any]

    def to_args(self) -> dict[str, Any]:
        return {"id": self.state.get("id"), "state": self.state}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> SessionPut:
        state = _dict(a, "state")
        _str(state, "id")
        _int(state, "epoch")
        return cls(state=state)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFetch:
    OP: ClassVar[str] = "session_fetch"
    connection_id: str

    def to_args(self) -> dict[str, Any]:
        return {"id": self.connection_id}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> SessionFetch:
        return cls(connection_id=_str(a, "id"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Handover:
    """Request: hand a connection's state over to the sender (the takeover's first step)."""

    OP: ClassVar[str] = "handover"
    connection_id: str
    epoch: int  # the epoch of the key the client resumed with
    # Set when the sender handed this connection to us and asks for it back: the key the client
    # resumed with, which our takeover replaced by a key the client never used (``reclaim``).
    key: str | None = None

    def to_args(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.connection_id, "epoch": self.epoch}
        if self.key is not None:
            out["key"] = self.key
        return out

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Handover:
        return cls(connection_id=_str(a, "id"), epoch=_int(a, "epoch", 0), key=_opt_str(a, "key"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Discard:
    """Drop whatever is held of a connection below ``epoch`` (fencing after a takeover)."""

    OP: ClassVar[str] = "discard"
    connection_id: str
    epoch: int

    def to_args(self) -> dict[str, Any]:
        return {"id": self.connection_id, "epoch": self.epoch}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> Discard:
        return cls(connection_id=_str(a, "id"), epoch=_int(a, "epoch", 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceOwned:
    """Push: a connection was taken over at ``epoch``. A frontend holding an older copy of it stops
    watching that copy for presence leaves (frontend/presence.py); the copy itself is untouched."""

    OP: ClassVar[str] = "presence_owned"
    connection_id: str
    epoch: int

    def to_args(self) -> dict[str, Any]:
        return {"id": self.connection_id, "epoch": self.epoch}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> PresenceOwned:
        return cls(connection_id=_str(a, "id"), epoch=_int(a, "epoch", 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceOwner:
    """Request: does this frontend own the connection at an epoch above ``epoch``? Asked of every
    live frontend before members are left on a connection's behalf (frontend/presence.py); the
    reply is ``{"owned": bool, "owner_alive": bool}``. A pull, so a missed ``presence_owned`` push
    cannot cause a leave, and a copy holder cut off from a live owner hears that it lives."""

    OP: ClassVar[str] = "presence_owner"
    connection_id: str
    epoch: int
    owner: str | None = None  # the owner the asker saw last: the reply says if this peer sees it alive

    def to_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"id": self.connection_id, "epoch": self.epoch}
        if self.owner is not None:
            args["owner"] = self.owner
        return args

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> PresenceOwner:
        owner = a.get("owner")
        owner = owner if isinstance(owner, str) else None
        return cls(connection_id=_str(a, "id"), epoch=_int(a, "epoch", 0), owner=owner)


# -- the REST layer's operations (frontend.rest) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RestCall:
    """Request: one of the REST layer's operations (history, occupancy, channels, rest_publish,
    token_nonce, token_revoke; ``FrontendNode.peer_ops``). The handler ``kind`` names checks its
    ``args``."""

    OP: ClassVar[str] = "rest"
    kind: str
    args: dict[str, Any]

    def to_args(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": self.args}

    @classmethod
    def from_args(cls, a: Mapping[str, Any]) -> RestCall:
        return cls(kind=_str(a, "kind"), args=_dict(a, "args"))


ChannelOp = (
    Publish | Attach | LogFetch | Replicate | ReplicaSync | Deliver | CopyReleased | Take | Unsubscribe
)
SessionOp = SessionPut | SessionFetch | Handover | Discard
PeerOp = ChannelOp | SessionOp | PresenceOwned | PresenceOwner | RestCall

_RECORDS: dict[str, Any] = {
    r.OP: r
    for r in (
        Publish,
        Attach,
        LogFetch,
        Replicate,
        ReplicaSync,
        Deliver,
        CopyReleased,
        Take,
        Unsubscribe,
        SessionPut,
        SessionFetch,
        Handover,
        Discard,
        PresenceOwned,
        PresenceOwner,
        RestCall,
    )
}


def decode(op: str, args: Mapping[str, Any]) -> PeerOp:
    """The record for a frame's ``op`` and ``args``; raise RemoteProtocolError."""
    record = _RECORDS.get(op)
    if record is None:
        raise RemoteProtocolError(f"unknown peer op {op!r:.40}")
    try:
        out: PeerOp = record.from_args(args)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RemoteProtocolError(f"malformed {op}: {type(exc).__name__}") from None
    return out

"""States and the events the client surfaces: connection and channel state changes.

These are values the application reads (``conn.events()``, ``conn.event_log``),
and also what the pure :class:`client.session.ClientSession` emits for its driver.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from kernel.errors import ErrorInfo


class ConnectionState(enum.StrEnum):
    """Connection states, as ably-js names them (RTN4)."""

    INITIALIZED = "initialized"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    SUSPENDED = "suspended"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class ChannelState(enum.StrEnum):
    """Channel states, as ably-js names them (RTL2)."""

    INITIALIZED = "initialized"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    SUSPENDED = "suspended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEvent:
    """The connection changed state.

    On ``connected`` after a reconnect, ``resumed`` says whether the server kept
    the connection (same connectionId, RTN15c6). ``resumed=False`` with a
    ``reason`` (80008 expired, 80018 forged key) is a lost connection: a new
    connectionId, msgSerial restarted, channels re-attached.
    """

    state: ConnectionState
    previous: ConnectionState
    connection_id: str | None = None
    resumed: bool = False
    reason: ErrorInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent:
    """A channel changed state (or, as ``update``, was re-attached while attached).

    For ``attached``: ``resumed`` is the RESUMED flag (no gap since the serial
    the client held). ``resumed=False`` with ``reason`` code 90003 means
    continuity was lost on this channel.
    """

    channel: str
    state: ChannelState
    previous: ChannelState
    resumed: bool = False
    reason: ErrorInfo | None = None
    update: bool = False

    @property
    def attached(self) -> bool:
        return self.state is ChannelState.ATTACHED


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """Core → driver: a message for an attached channel."""

    channel: str
    message: dict[str, Any]
    channel_serial: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishAcked:
    """Core → driver: the publish with ``token`` was ACKed; ``serials`` from ``res``."""

    token: int
    serials: list[str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishFailed:
    """Core → driver: the publish with ``token`` was NACKed or abandoned."""

    token: int
    reason: ErrorInfo
    nacked: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Core → driver: the server echoed ping ``id``."""

    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportDropped:
    """Core → driver: close the current transport (server DISCONNECTED/ERROR/CLOSED, idle timeout)."""

    reason: ErrorInfo | None = None


StateEvent = ConnectionEvent | ChannelEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceEvent:
    """One presence event or SYNC member, as the server sent it."""

    channel: str
    action: str  # "enter" | "update" | "leave" | "present" (a SYNC member)
    client_id: str | None
    connection_id: str | None
    id: str | None
    timestamp: int | None
    data: Any
    channel_serial: str | None  # the log serial of an event; the sync cursor of a SYNC page
    sync: bool = False  # a member of a SYNC page
    sync_last: bool = False  # ... of its last page


CoreEvent = (
    ConnectionEvent
    | ChannelEvent
    | MessageReceived
    | PresenceEvent
    | PublishAcked
    | PublishFailed
    | Pong
    | TransportDropped
)

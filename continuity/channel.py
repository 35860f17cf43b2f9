"""A channel of a Connection (RTL*): attach, detach, publish with ACK, subscribe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from continuity.errors import (
    ChannelFailedError,
    ClientError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionSuspendedError,
    PublishError,
)
from continuity.events import ChannelEvent, ChannelState, ConnectionState, PresenceEvent
from continuity.feed import Feed, Subscription
from continuity.message import Data, OutboundMessage
from continuity.session import ClientSession
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import message_size

PRESENCE_ACTIONS = {"enter": 2, "leave": 3, "update": 4}  # TP2
# Default buffer of one subscription before it overflows, in messages.
DEFAULT_SUBSCRIPTION_BUFFER = 100_000
# Ably's default maxMessageSize (TO3l8), used before a CONNECTED has advertised the server's.
DEFAULT_MAX_MESSAGE_SIZE = 65_536


@dataclass(slots=True)
class Waiter:
    """A publish or ping waiting for its answer."""

    event: trio.Event
    result: Any = None
    error: ErrorInfo | None = None
    nacked: bool = False


class ChannelHost(Protocol):
    """What a channel drives on the connection that made it (``continuity.connection.Connection``): its
    session core, the publishes waiting for an ACK, and the wake-ups. Declared here, by the channel that
    needs it, so that the channel does not import the connection that imports it."""

    operation_timeout: float
    _session: ClientSession
    _publishes: dict[int, Waiter]

    @property
    def state(self) -> ConnectionState: ...

    @property
    def details(self) -> dict[str, Any]: ...

    def _dispatch(self) -> None: ...

    def _raise_if_dead(self) -> None: ...

    async def _changed(self) -> None: ...


class Channel:
    """A channel on a :class:`Connection`. Get one with ``conn.channel(name)``."""

    def __init__(self, conn: ChannelHost, name: str) -> None:
        self._conn = conn
        self.name = name
        self._subs: list[Subscription] = []
        self._presence_subs: list[Feed[PresenceEvent]] = []
        self.last_attach: ChannelEvent | None = None

    @property
    def state(self) -> ChannelState:
        return self._conn._session.channel(self.name).state

    @property
    def serial(self) -> str | None:
        """The last channelSerial received on this channel (RTL15b)."""
        return self._conn._session.channel(self.name).serial

    @property
    def reason(self) -> ErrorInfo | None:
        return self._conn._session.channel(self.name).reason

    async def attach(self, *, modes: int = 0, params: dict[str, str] | None = None) -> ChannelEvent:
        """Attach and return the ``attached`` event (``resumed``, ``reason``).

        Raises ChannelFailedError if the server refuses (or the attach times out), a
        connection error if the connection is suspended, closed or failed meanwhile, and
        trio.TooSlowError after the connection's ``operation_timeout``.
        """
        conn = self._conn
        if self.state is ChannelState.ATTACHED and self.last_attach is not None:
            return self.last_attach
        conn._session.attach(trio.current_time(), self.name, modes=modes, params=params)
        conn._dispatch()
        with trio.fail_after(conn.operation_timeout):
            while True:
                state = self.state
                if state is ChannelState.ATTACHED and self.last_attach is not None:
                    return self.last_attach
                if state in (ChannelState.FAILED, ChannelState.SUSPENDED, ChannelState.DETACHED):
                    raise ChannelFailedError(f"attach {self.name!r} ended {state}", self.reason)
                conn._raise_if_dead()
                await conn._changed()

    async def detach(self) -> None:
        """Detach (RTL5) and wait for DETACHED."""
        conn = self._conn
        conn._session.detach(self.name)
        conn._dispatch()
        with trio.fail_after(conn.operation_timeout):
            while self.state is not ChannelState.DETACHED:
                if self.state is ChannelState.FAILED:
                    raise ChannelFailedError(f"detach {self.name!r} failed", self.reason)
                conn._raise_if_dead()
                await conn._changed()

    async def presence(self, action: str, data: Data = None, *, client_id: str | None = None) -> None:
        """RTP8/9/10/14/15: ``"enter"``, ``"update"`` or ``"leave"`` (as ``client_id``, else the
        connection's clientId). Returns once ACKed; raises PublishError on NACK (e.g. 40160)."""
        if action not in ("enter", "update", "leave"):
            raise ValueError(f"presence action must be enter, update or leave, got {action!r}")
        wire: dict[str, Any] = {"action": PRESENCE_ACTIONS[action]}
        if data is not None:
            wire["data"] = data
        if client_id is not None:
            wire["clientId"] = client_id
        await self._send_and_wait([wire], presence=True)

    @asynccontextmanager
    async def presence_subscribe(
        self, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> AsyncIterator[Feed[PresenceEvent]]:
        """Yield a feed of this channel's presence events and SYNC members (attaches first)."""
        feed: Feed[PresenceEvent] = Feed(buffer, None)
        self._presence_subs.append(feed)
        try:
            await self.attach()
            yield feed
        finally:
            self._presence_subs.remove(feed)
            feed.finish()

    async def publish(
        self, name: str | Sequence[OutboundMessage] | None = None, data: Data = None
    ) -> list[str | None]:
        """Publish one message (``name, data``) or a list of OutboundMessage; return their serials.

        Returns once ACKed (``res[].serials``). Survives transport loss: an un-ACKed publish is re-sent
        on resume. Raises PublishError on NACK (``.code`` is the Ably code), ConnectionSuspendedError
        if the connection gives up first (connectionStateTtl). Bound it further with trio.fail_after.
        """
        if name is None or isinstance(name, str):
            wire = [OutboundMessage(name=name, data=data).to_wire()]
        else:
            wire = [m.to_wire() for m in name]
        return await self._send_and_wait(wire)

    async def _send_and_wait(self, wire: list[dict[str, Any]], *, presence: bool = False) -> list[str | None]:
        conn = self._conn
        # RSL1i: over the server's advertised maxMessageSize, refuse here with 40009, as ably-js
        # does; sent, it would be NACKed, or (over maxFrameSize) end the transport.
        limit = conn.details.get("maxMessageSize") or DEFAULT_MAX_MESSAGE_SIZE
        size = sum(message_size(m) for m in wire)
        if isinstance(limit, int) and size > limit:
            raise PublishError(f"publish to {self.name!r} refused before sending", ErrorInfo.of(
                ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED, f"message size {size} exceeds the maximum of {limit}"))
        token = conn._session.publish(self.name, wire, presence=presence)
        waiter = conn._publishes[token] = Waiter(trio.Event())
        conn._dispatch()
        try:
            await waiter.event.wait()
        finally:
            conn._publishes.pop(token, None)
        if waiter.error is not None:
            if waiter.nacked:
                raise PublishError(f"publish to {self.name!r} NACKed", waiter.error)
            raise connection_error(conn.state, waiter.error)
        serials: list[str | None] = waiter.result
        return serials

    @asynccontextmanager
    async def subscribe(
        self, name: str | None = None, *, attach: bool = True, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> AsyncIterator[Subscription]:
        """Yield a feed of this channel's messages (only those called ``name``, if given).

        Attaches first unless ``attach=False``. The feed ends when the connection closes.
        """
        sub: Subscription = Feed(buffer, None if name is None else (lambda m: m.name == name))
        self._subs.append(sub)
        try:
            if attach:
                await self.attach()
            yield sub
        finally:
            self._subs.remove(sub)
            sub.finish()


def connection_error(state: ConnectionState, reason: ErrorInfo | None) -> ClientError:
    if state is ConnectionState.SUSPENDED or (
        reason is not None and reason.code == ErrorCode.CONNECTION_SUSPENDED
    ):
        return ConnectionSuspendedError("connection suspended", reason)
    if state is ConnectionState.FAILED:
        return ConnectionFailedError("connection failed", reason)
    return ConnectionClosedError(f"connection {state}", reason)

"""The trio driver around :class:`client.session.ClientSession`: transports, timers, waiters.

One background task (``_supervise``) opens transports while the session wants
one, with the session's backoff between attempts; per transport a reader feeds
inbound frames to the session and a writer sends what it drains. A ticker
fires the session's deadlines. Every core input is followed by ``_dispatch``,
which routes the session's events to waiters, subscriptions and event streams.

Transports are tried in the order of ``Connection.transports`` (``web_socket``
then ``comet`` by default; the drivers are ``continuity.websocket`` and
``continuity.comet``, the HTTP long-poll). A transport that reaches the server but
does not open there (the upgrade is answered with an HTTP error, the socket is
closed or reset before the 101, the handshake times out) is followed at once,
in the same connect attempt, by the next one, with a connect deadline of its
own. Once a WebSocket upgrade has been answered with an HTTP error or has
timed out, the connection marks it unavailable (``websocket_unavailable``) and
later attempts start with Comet, as ably-js persists its fallback. A server
that cannot be reached at all is no reason to fall back: the session's backoff
applies. The session is transport-agnostic, so a resume may cross from one
transport to the other in either direction with the same guarantees (RTN15c6, RTL15b).
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import trio
import trio_websocket

from continuity.backoff import Backoff
from continuity.channel import Channel, Waiter, connection_error
from continuity.comet import DEFAULT_RECV_TIMEOUT, CometTarget, run_comet
from continuity.errors import ConnectionFailedError
from continuity.events import (
    ChannelEvent,
    ChannelState,
    ConnectionEvent,
    ConnectionState,
    MessageReceived,
    Pong,
    PresenceEvent,
    PublishAcked,
    PublishFailed,
    StateEvent,
    TransportDropped,
)
from continuity.feed import EventStream, Feed
from continuity.message import Data, Message, OutboundMessage
from continuity.recovery import RecoveryKey
from continuity.session import CONNECT_TIMEOUT, TERMINAL, ClientSession, SessionConfig
from continuity.transport import (
    COMET,
    TRANSPORT_ERRORS,
    TRANSPORTS,
    WEB_SOCKET,
    Attempt,
    CometError,
    check_transports,
    transport_order,
)
from continuity.websocket import WebSocketTarget, run_websocket
from kernel.errors import ErrorInfo, RemoteProtocolError
from kernel.protocol import Format, ProtocolMessage

PROTOCOL_VERSION = "6"
# Largest inbound frame we accept from the server.
MAX_INBOUND_FRAME = 64 * 1024 * 1024

class Connection:
    """A realtime connection that survives transport loss. Create with :func:`connect`."""

    def __init__(self, url: str, *, params: dict[str, str], fmt: Format, session: ClientSession,
                 operation_timeout: float, event_buffer: int,
                 transports: Iterable[str] = TRANSPORTS) -> None:
        # ``transports``: the names to try, in order, on each connect attempt (``continuity.transport``).
        self._base_url = url
        self._transports = check_transports(transports)
        # The transport now (or last) open, and every transport opened, in order.
        self.transport: str | None = None
        self.transport_log: deque[str] = deque(maxlen=1024)
        # Set once a WebSocket upgrade was refused (HTTP error) or timed out: later attempts start
        # with Comet. Setting ``transports`` clears it.
        self.websocket_unavailable = False
        self._params = params
        self.format: Format = fmt
        self._session = session
        self.operation_timeout = operation_timeout
        self.close_timeout = min(2.0, session.config.request_timeout)
        self._event_buffer = event_buffer
        self._channels: dict[str, Channel] = {}
        self._publishes: dict[int, Waiter] = {}
        self._pings: dict[str, Waiter] = {}
        self._streams: list[EventStream] = []
        self._change = trio.Event()
        self._wake_writer = trio.Event()
        self._transport_scope: trio.CancelScope | None = None
        self.event_log: deque[StateEvent] = deque(maxlen=1024)
        self.transports_opened = 0

    # ---------------------------------------------------------------- public

    @property
    def id(self) -> str | None:
        return self._session.connection_id

    @property
    def key(self) -> str | None:
        return self._session.connection_key

    @property
    def state(self) -> ConnectionState:
        return self._session.state

    @property
    def error_reason(self) -> ErrorInfo | None:
        return self._session.error_reason

    @property
    def details(self) -> dict[str, Any]:
        """The last CONNECTED's connectionDetails."""
        return self._session.details

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports tried, in order, on each connect attempt (``web_socket``, ``comet``)."""
        return self._transports

    @transports.setter
    def transports(self, value: Iterable[str]) -> None:
        """Change the order for later attempts (the current transport is kept until it ends, see
        ``drop_transport``); forgets ``websocket_unavailable``. Raises ValueError on a bad list."""
        self._transports = check_transports(value)
        self.websocket_unavailable = False

    @property
    def msg_serial(self) -> int:
        """The msgSerial the next publish will get."""
        return self._session.msg_serial

    def channel(self, name: str) -> Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = Channel(self, name)
        return ch

    def recovery_key(self) -> str | None:
        """ably-js ``createRecoveryKey()``: JSON ``{connectionKey, msgSerial, channelSerials}``, or None."""
        key = self._session.recovery_key()
        return None if key is None else key.to_json()

    @asynccontextmanager
    async def events(self, *, buffer: int | None = None) -> AsyncIterator[EventStream]:
        """Yield a feed of every later connection and channel state event (earlier ones: ``event_log``)."""
        stream: EventStream = Feed(buffer if buffer is not None else self._event_buffer)
        self._streams.append(stream)
        try:
            yield stream
        finally:
            self._streams.remove(stream)
            stream.finish()

    async def wait_for_state(self, *states: ConnectionState) -> None:
        """Wait until the connection is in one of ``states``.

        Raises trio.TooSlowError after ``operation_timeout``, or a connection error if it ends first.
        """
        with trio.fail_after(self.operation_timeout):
            while self.state not in states:
                if self.state in TERMINAL:
                    raise connection_error(self.state, self.error_reason)
                await self._changed()

    async def ping(self) -> float:
        """Send a HEARTBEAT with a random id and return the seconds until the server echoed it (RTN13)."""
        ping_id = secrets.token_hex(8)
        waiter = self._pings[ping_id] = Waiter(trio.Event())
        start = trio.current_time()
        try:
            self._session.ping(ping_id)
            self._dispatch()
            with trio.fail_after(self._session.config.request_timeout):
                await waiter.event.wait()
        finally:
            self._pings.pop(ping_id, None)
        return trio.current_time() - start

    def send_raw(self, pm: ProtocolMessage) -> None:
        """Send a frame the session does not track, on the current transport (for tests and tools)."""
        self._session.send_raw(pm)
        self._dispatch()

    def drop_transport(self) -> None:
        """Abandon the current transport as if the network failed; the connection resumes."""
        if self._transport_scope is not None:
            self._transport_scope.cancel()

    def abandon(self) -> None:
        """Stop at once without CLOSE, as a crashed process would: the server keeps the connection
        state for connectionStateTtl, so ``recovery_key()`` taken before this can recover it."""
        self._session.abandon()
        self._dispatch()

    async def close(self) -> None:
        """CLOSE and wait (at most ``close_timeout``) for CLOSED (RTN12); the server disposes of the state."""
        self._session.close()
        self._dispatch()
        with trio.move_on_after(self.close_timeout):
            while self.state not in TERMINAL:
                await self._changed()
        if self.state not in TERMINAL:
            self._session.transport_lost(trio.current_time())
            self._session.close()
            self._dispatch()
        self.drop_transport()

    # -------------------------------------------------------------- driver

    async def _changed(self) -> None:
        await self._change.wait()

    def _raise_if_dead(self) -> None:
        if self.state in TERMINAL or self.state is ConnectionState.SUSPENDED:
            raise connection_error(self.state, self.error_reason)

    def _dispatch(self) -> None:
        """Route the session's events, wake the writer and every waiter."""
        for event in self._session.events():
            match event:
                case MessageReceived(channel=name, message=raw, channel_serial=serial):
                    ch = self._channels.get(name)
                    if ch is not None and ch._subs:
                        msg = Message.from_wire(name, raw, serial)
                        for sub in ch._subs:
                            sub.push(msg)
                case PresenceEvent(channel=name):
                    ch = self._channels.get(name)
                    if ch is not None:
                        for psub in ch._presence_subs:
                            psub.push(event)
                case PublishAcked(token=token, serials=serials):
                    waiter = self._publishes.get(token)
                    if waiter is not None:
                        waiter.result = serials
                        waiter.event.set()
                case PublishFailed(token=token, reason=reason, nacked=nacked):
                    waiter = self._publishes.get(token)
                    if waiter is not None:
                        waiter.error, waiter.nacked = reason, nacked
                        waiter.event.set()
                case Pong(id=ping_id):
                    waiter = self._pings.get(ping_id)
                    if waiter is not None:
                        waiter.event.set()
                case TransportDropped():
                    self.drop_transport()
                case ChannelEvent() | ConnectionEvent():
                    if isinstance(event, ChannelEvent) and event.state is ChannelState.ATTACHED:
                        self.channel(event.channel).last_attach = event
                    self.event_log.append(event)
                    for stream in self._streams:
                        stream.push(event)
        if self.state in TERMINAL:
            error = None if self.state is ConnectionState.CLOSED else connection_error(
                self.state, self.error_reason)
            for ch in self._channels.values():
                for sub in ch._subs:
                    sub.finish(error)
        self._wake_writer.set()
        self._change.set()
        self._change = trio.Event()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick_loop)
            await self._supervise()
            nursery.cancel_scope.cancel()

    async def _tick_loop(self) -> None:
        while True:
            deadline = self._session.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._changed()
                continue
            self._session.tick(trio.current_time())
            self._dispatch()

    async def _supervise(self) -> None:
        session = self._session
        while session.state not in TERMINAL:
            while not session.wants_transport(trio.current_time()):
                if session.state in TERMINAL:
                    return
                at = session.reconnect_at
                with trio.move_on_at(at if at is not None else math.inf):
                    await self._changed()
            session.start_connect(trio.current_time())
            self._dispatch()
            reason = await self._run_transport()
            session.transport_lost(trio.current_time(), reason)
            self._dispatch()

    async def _run_transport(self) -> ErrorInfo | None:
        """Open a transport, falling back along ``transports`` within this connect attempt, and
        pump it until it ends; return why it ended (None if dropped on the session's request)."""
        order = transport_order(self._transports, self.websocket_unavailable)
        attempt: Attempt | None = None
        for kind in order:
            if attempt is not None:
                self._session.start_connect(trio.current_time())  # a fresh deadline for this one
            attempt = await self._run_one(kind)
            if attempt.websocket_refused and COMET in order and not self.websocket_unavailable:
                self.websocket_unavailable = True  # later attempts start with Comet
            if not attempt.falls_back or self._session.state is not ConnectionState.CONNECTING:
                break
        return None if attempt is None else attempt.reason

    async def _run_one(self, kind: str) -> Attempt:
        """Run one transport of ``kind`` until it ends; say how it went."""
        url = urlsplit(self._base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        query = {**dict(parse_qsl(url.query)), **self._params, **self._session.connect_params()}
        timeout = self._session.config.request_timeout
        attempt = Attempt(kind=kind)
        with trio.CancelScope() as scope:
            self._transport_scope = scope
            link = _Link(self, attempt, scope)
            try:
                if kind == WEB_SOCKET:
                    await run_websocket(link, WebSocketTarget(
                        host=host, port=port, resource=f"{url.path or '/'}?{urlencode(query)}",
                        format=self.format, max_size=MAX_INBOUND_FRAME, request_timeout=timeout))
                else:
                    await run_comet(link, CometTarget(host=host, port=port, params=query,
                                                      request_timeout=timeout, max_size=MAX_INBOUND_FRAME))
            except TRANSPORT_ERRORS as exc:
                attempt.failure = exc
            except BaseExceptionGroup as group:
                matched, rest = group.split(TRANSPORT_ERRORS)
                if rest is not None:
                    raise rest from None
                if matched is not None:
                    attempt.failure = _most_telling(matched)
        self._transport_scope = None
        attempt.timed_out = (not attempt.opened and scope.cancelled_caught
                             and self._session.error_reason == CONNECT_TIMEOUT)
        return attempt


def _most_telling(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The leaf of ``group`` that says most about why a transport failed: a rejected upgrade or
    a server's answer before a plain close or reset."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    telling = (trio_websocket.ConnectionRejected, CometError, RemoteProtocolError)
    return next((e for e in leaves if isinstance(e, telling)), leaves[0])


class _Link:
    """A Connection as a ``continuity.transport.Link``: one transport's frames in and out of the session."""

    def __init__(self, conn: Connection, attempt: Attempt, scope: trio.CancelScope) -> None:
        self._conn = conn
        self._attempt = attempt
        self._scope = scope

    @property
    def key(self) -> str | None:
        return self._conn._session.connection_key

    @property
    def recv_timeout(self) -> float:
        idle = self._conn._session.details.get("maxIdleInterval")
        if not isinstance(idle, int | float) or isinstance(idle, bool) or idle <= 0:
            return DEFAULT_RECV_TIMEOUT
        return idle / 1000 + self._conn._session.config.request_timeout

    def reached(self) -> None:
        self._attempt.reached = True

    def opened(self) -> None:
        conn = self._conn
        if not self._attempt.opened:
            self._attempt.opened = True
            conn.transport = self._attempt.kind
            conn.transport_log.append(self._attempt.kind)
            conn.transports_opened += 1

    def deliver(self, frames: list[ProtocolMessage]) -> None:
        conn = self._conn
        for pm in frames:
            if self._scope.cancel_called:
                return  # the session dropped this transport (DISCONNECTED, a timeout): ignore the rest
            conn._session.handle(trio.current_time(), pm)
            conn._dispatch()

    def activity(self) -> None:
        self._conn._session.activity(trio.current_time())

    def outgoing(self) -> list[ProtocolMessage]:
        return self._conn._session.outgoing()

    async def wait_outgoing(self) -> None:
        conn = self._conn
        await conn._wake_writer.wait()
        conn._wake_writer = trio.Event()


@asynccontextmanager
async def connect(
    url: str,
    *,
    key: str | None = None,
    token: str | None = None,
    client_id: str | None = None,
    format: Format = "msgpack",
    echo: bool = True,
    recover: str | RecoveryKey | None = None,
    transport_params: dict[str, str] | None = None,
    backoff: Backoff | None = None,
    request_timeout: float = 10.0,
    connect_timeout: float = 15.0,
    connection_state_ttl: float | None = None,
    suspended_retry: float = 5.0,
    operation_timeout: float = 15.0,
    rng: random.Random | None = None,
    wait_connected: bool = True,
    event_buffer: int = 10_000,
    transports: Sequence[str] = TRANSPORTS,
) -> AsyncIterator[Connection]:
    """Open a realtime connection to ``url`` (``ws://host:port``) and yield it, CONNECTED.

    ``transports`` is the order to try: ``("web_socket", "comet")`` (the default) falls back to
    Comet (HTTP long-poll, JSON only) when the WebSocket upgrade fails or times out;
    ``("comet",)`` forces Comet; ``("web_socket",)`` never falls back. Raises ValueError on an
    unknown name.

    ``key`` is ``appId.keyId:secret`` (basic auth), ``token`` a JWT. ``recover`` is a
    ``recovery_key()`` string from an earlier connection (RTN16); a malformed one is ignored.
    Raises ConnectionFailedError if the server refuses the connection or it is not CONNECTED
    within ``connect_timeout`` seconds. On exit the connection is closed (CLOSE → CLOSED).
    """
    if format not in ("json", "msgpack"):
        raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")
    order = check_transports(transports)
    params: dict[str, str] = {"format": format, "v": PROTOCOL_VERSION, "heartbeats": "true"}
    if key is not None:
        params["key"] = key
    if token is not None:
        params["access_token"] = token
    if client_id is not None:
        params["clientId"] = client_id
    if not echo:
        params["echo"] = "false"
    params.update(transport_params or {})
    recovery = RecoveryKey.parse(recover) if isinstance(recover, str) else recover
    config = SessionConfig(request_timeout=request_timeout, backoff=backoff or Backoff(),
                           connection_state_ttl=connection_state_ttl, suspended_retry=suspended_retry)
    session = ClientSession(config, rng=rng, recover=recovery)
    conn = Connection(url, params=params, fmt=format, session=session,
                      operation_timeout=operation_timeout, event_buffer=event_buffer, transports=order)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._run)
            try:
                if wait_connected:
                    with trio.move_on_after(connect_timeout):
                        while conn.state is not ConnectionState.CONNECTED:
                            conn._raise_if_dead()
                            await conn._changed()
                    if conn.state is not ConnectionState.CONNECTED:
                        raise ConnectionFailedError(f"not connected after {connect_timeout} s ({conn.state})",
                                                    conn.error_reason)
                yield conn
            finally:
                with trio.CancelScope(shield=True):
                    await conn.close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The nursery wraps everything; hand the application the one exception it raised or caused.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def messages(items: Iterable[tuple[str | None, Data]]) -> list[OutboundMessage]:
    """``[(name, data), ...]`` as OutboundMessages, for ``ch.publish(messages(...))``."""
    return [OutboundMessage(name=n, data=d) for n, d in items]

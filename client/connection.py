"""The trio driver around :class:`client.session.ClientSession`: WebSocket I/O, timers, waiters.

One background task (``_supervise``) opens transports while the session wants
one, with the session's backoff between attempts; per transport a reader feeds
inbound frames to the session and a writer sends what it drains. A ticker
fires the session's deadlines. Every core input is followed by ``_dispatch``,
which routes the session's events to waiters, subscriptions and event streams.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection

from client.backoff import Backoff
from client.errors import (
    ChannelFailedError,
    ClientError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionSuspendedError,
    PublishError,
    SubscriptionOverflowError,
)
from client.events import (
    ChannelEvent,
    ChannelState,
    ConnectionEvent,
    ConnectionState,
    MessageReceived,
    Pong,
    PublishAcked,
    PublishFailed,
    StateEvent,
    TransportDropped,
)
from client.message import Data, Message, OutboundMessage
from client.recovery import RecoveryKey
from client.session import TERMINAL, ClientSession, SessionConfig
from frontend.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from frontend.protocol import Format, ProtocolMessage, decode, encode

PROTOCOL_VERSION = "6"
# Largest inbound frame we accept from the server.
MAX_INBOUND_FRAME = 64 * 1024 * 1024
# Default buffer of one subscription before it overflows, in messages.
DEFAULT_SUBSCRIPTION_BUFFER = 100_000

T = TypeVar("T")


class Feed(Generic[T]):
    """A bounded per-subscriber queue. Iterating ends when the source closes it.

    If the subscriber falls ``buffer`` items behind, iteration raises
    :class:`SubscriptionOverflowError` after the buffered items: nothing is
    dropped silently.
    """

    def __init__(self, buffer: int, predicate: Callable[[T], bool] | None = None) -> None:
        self._send, self._recv = trio.open_memory_channel[T](buffer)
        self._predicate = predicate
        self._error: ClientError | None = None

    def push(self, item: T) -> None:
        if self._error is not None or (self._predicate is not None and not self._predicate(item)):
            return
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.finish(SubscriptionOverflowError("subscriber fell too far behind"))
        except trio.ClosedResourceError:
            pass

    def finish(self, error: ClientError | None = None) -> None:
        if self._error is None:
            self._error = error
        self._send.close()

    async def receive(self) -> T:
        """The next item. Raises StopAsyncIteration at the end, or the error that ended the feed."""
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    def __aiter__(self) -> Feed[T]:
        return self

    async def __anext__(self) -> T:
        return await self.receive()


Subscription = Feed[Message]
EventStream = Feed[StateEvent]


@dataclass(slots=True)
class _Waiter:
    event: trio.Event
    result: Any = None
    error: ErrorInfo | None = None
    nacked: bool = False


class Channel:
    """A channel on a :class:`Connection`. Get one with ``conn.channel(name)``."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self.name = name
        self._subs: list[Subscription] = []
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

    async def publish(self, name: str | Sequence[OutboundMessage] | None = None,
                      data: Data = None) -> list[str | None]:
        """Publish one message (``name, data``) or a list of OutboundMessage; return their serials.

        Returns once ACKed (``res[].serials``). Survives transport loss: an un-ACKed publish is re-sent
        on resume. Raises PublishError on NACK (``.code`` is the Ably code), ConnectionSuspendedError
        if the connection gives up first (connectionStateTtl). Bound it further with trio.fail_after.
        """
        if name is None or isinstance(name, str):
            wire = [OutboundMessage(name=name, data=data).to_wire()]
        else:
            wire = [m.to_wire() for m in name]
        conn = self._conn
        token = conn._session.publish(self.name, wire)
        waiter = conn._publishes[token] = _Waiter(trio.Event())
        conn._dispatch()
        try:
            await waiter.event.wait()
        finally:
            conn._publishes.pop(token, None)
        if waiter.error is not None:
            if waiter.nacked:
                raise PublishError(f"publish to {self.name!r} NACKed", waiter.error)
            raise _connection_error(conn.state, waiter.error)
        serials: list[str | None] = waiter.result
        return serials

    @asynccontextmanager
    async def subscribe(self, name: str | None = None, *, attach: bool = True,
                        buffer: int = DEFAULT_SUBSCRIPTION_BUFFER) -> AsyncIterator[Subscription]:
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


class Connection:
    """A realtime connection that survives transport loss. Create with :func:`connect`."""

    def __init__(self, url: str, *, params: dict[str, str], fmt: Format, session: ClientSession,
                 operation_timeout: float, event_buffer: int) -> None:
        self._base_url = url
        self._params = params
        self.format: Format = fmt
        self._session = session
        self.operation_timeout = operation_timeout
        self.close_timeout = min(2.0, session.config.request_timeout)
        self._event_buffer = event_buffer
        self._channels: dict[str, Channel] = {}
        self._publishes: dict[int, _Waiter] = {}
        self._pings: dict[str, _Waiter] = {}
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
                    raise _connection_error(self.state, self.error_reason)
                await self._changed()

    async def ping(self) -> float:
        """Send a HEARTBEAT with a random id and return the seconds until the server echoed it (RTN13)."""
        ping_id = secrets.token_hex(8)
        waiter = self._pings[ping_id] = _Waiter(trio.Event())
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
            raise _connection_error(self.state, self.error_reason)

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
            error = None if self.state is ConnectionState.CLOSED else _connection_error(
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

    def _url(self) -> str:
        parts = urlsplit(self._base_url)
        query = {**dict(parse_qsl(parts.query)), **self._params, **self._session.connect_params()}
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))

    async def _run_transport(self) -> ErrorInfo | None:
        """Open one transport and pump it until it ends; return why it ended.

        The TCP stream is ours (not trio-websocket's), so that it is closed on every path.
        """
        url = urlsplit(self._url())
        host, port = url.hostname or "127.0.0.1", url.port or 80
        resource = f"{url.path or '/'}?{url.query}"
        ended: list[ErrorInfo] = []
        stream: trio.SocketStream | None = None
        with trio.CancelScope() as scope:
            self._transport_scope = scope
            try:
                with trio.fail_after(self._session.config.request_timeout):
                    stream = await trio.open_tcp_stream(host, port)
                async with trio.open_nursery() as nursery:
                    with trio.fail_after(self._session.config.request_timeout):
                        ws = await _open_handshake(nursery, stream, f"{host}:{port}", resource)
                    self.transports_opened += 1
                    nursery.start_soon(self._pump, self._writer, ws, ended, nursery.cancel_scope)
                    await self._pump(self._reader, ws, ended, nursery.cancel_scope)
            except (*_TRANSPORT_ERRORS, trio.TooSlowError) as exc:
                ended.append(_transport_error(exc))
            except BaseExceptionGroup as group:
                matched, rest = group.split((*_TRANSPORT_ERRORS, trio.TooSlowError))
                if rest is not None:
                    raise rest from None
                if matched is not None:
                    ended.append(_transport_error(matched.exceptions[0]))
            finally:
                if stream is not None:
                    stream.socket.close()
        self._transport_scope = None
        return ended[0] if ended else None

    async def _pump(self, loop: Callable[[trio_websocket.WebSocketConnection], Awaitable[None]],
                    ws: trio_websocket.WebSocketConnection, ended: list[ErrorInfo],
                    done: trio.CancelScope) -> None:
        """Run ``loop`` until the transport fails; record why and end the transport."""
        try:
            await loop(ws)
        except _TRANSPORT_ERRORS as exc:
            ended.append(_transport_error(exc))
        except RemoteProtocolError as exc:
            ended.append(exc.info())
        finally:
            done.cancel()

    async def _reader(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            frame = await ws.get_message()
            pm = decode(frame, self.format, max_size=MAX_INBOUND_FRAME)
            self._session.handle(trio.current_time(), pm)
            self._dispatch()

    async def _writer(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            frames = self._session.outgoing()
            if not frames:
                await self._wake_writer.wait()
                self._wake_writer = trio.Event()
                continue
            for pm in frames:
                data = encode(pm, self.format)
                await ws.send_message(data.decode("utf-8") if self.format == "json" else data)


async def _open_handshake(nursery: trio.Nursery, stream: trio.SocketStream, host: str,
                          resource: str) -> trio_websocket.WebSocketConnection:
    """``trio_websocket.wrap_client_stream``, minus its hang.

    trio-websocket 0.12.2 waits for the opening handshake on an event that its reader task never
    sets if the peer resets the socket first, so a connect during a network cut would hang until
    the connect timeout. Here the reader's end also ends the wait (private attributes, pinned to
    the 0.12 internals; the caller closes the stream on every path).
    """
    ws = trio_websocket.WebSocketConnection(
        stream, WSConnection(ConnectionType.CLIENT), host=host, path=resource,
        message_queue_size=64, max_message_size=MAX_INBOUND_FRAME,
    )
    handshake: trio.Event = ws._open_handshake

    async def read() -> None:
        try:
            await ws._reader_task()
        finally:
            handshake.set()

    nursery.start_soon(read)
    await handshake.wait()
    if ws.closed is not None:
        raise trio_websocket.ConnectionClosed(ws.closed)
    return ws


_TRANSPORT_ERRORS = (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                     trio.BrokenResourceError, trio.ClosedResourceError)


def _transport_error(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(code=int(ErrorCode.DISCONNECTED), status_code=0,
                     message=f"transport lost: {type(exc).__name__}: {exc}")


def _connection_error(state: ConnectionState, reason: ErrorInfo | None) -> ClientError:
    if state is ConnectionState.SUSPENDED or (reason is not None
                                              and reason.code == ErrorCode.CONNECTION_SUSPENDED):
        return ConnectionSuspendedError("connection suspended", reason)
    if state is ConnectionState.FAILED:
        return ConnectionFailedError("connection failed", reason)
    return ConnectionClosedError(f"connection {state}", reason)


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
) -> AsyncIterator[Connection]:
    """Open a realtime connection to ``url`` (``ws://host:port``) and yield it, CONNECTED.

    ``key`` is ``appId.keyId:secret`` (basic auth), ``token`` a JWT. ``recover`` is a
    ``recovery_key()`` string from an earlier connection (RTN16); a malformed one is ignored.
    Raises ConnectionFailedError if the server refuses the connection or it is not CONNECTED
    within ``connect_timeout`` seconds. On exit the connection is closed (CLOSE → CLOSED).
    """
    if format not in ("json", "msgpack"):
        raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")
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
                      operation_timeout=operation_timeout, event_buffer=event_buffer)
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

"""The WebSocket transport: a wsproto connection on a trio stream, as a node Outlet.

Two tasks per transport. The reader feeds wsproto and hands whole
ProtocolMessages to the node. Outbound bytes wait in one ordered queue. With an
``Outflow`` (the server always has one) a transport whose writer task is idle
is flushed by the Outflow's task with one non-blocking send per burst, so a
delivery costs no task switch of its own; the writer task takes over only when
the socket would block, joining everything queued into one ``send_all``. It
also sends a HEARTBEAT after ``maxIdleInterval`` of outbound silence (RTN23)
and the close handshake. See ``frontend.outflow`` for the ordering rule, the
read receipts (a Ping with the byte offset every quarter window; its Pong
bounds what a client has unread) and publisher flow control: a connection that
publishes is not read while the process's unsent backlog is above the
high-water mark.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

import structlog
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from frontend.clock import wall_ms
from frontend.node import FrontendNode
from frontend.outflow import Outflow
from frontend.session import Session
from kernel import protocol as P
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.protocol import Action, Encoded, ProtocolMessage
from kernel.sockread import read_ready
from kernel.wsframe import frame_for

log = structlog.get_logger("continuity.frontend")

_HEARTBEAT = Encoded.of(ProtocolMessage(action=Action.HEARTBEAT))
READ_CHUNK = 65536
MAX_PROBES = 64  # read-receipt Pings awaiting their Pong, at most (the oldest is forgotten)


class WebSocketTransport:
    """Outlet for one WebSocket; see FrontendNode.Outlet."""

    # Slots: an instance dict of these ~26 attributes was ~1 KB on every idle connection.
    __slots__ = (
        "_close_timeout_s",
        "_closed",
        "_closing",
        "_idle_s",
        "_last_probe",
        "_limit",
        "_outflow",
        "_probe_every",
        "_probes",
        "_pushed",
        "_queue",
        "_refused",
        "_scheduled",
        "_send_scope",
        "_socket",
        "_unsent",
        "_wake",
        "_window",
        "_write_began",
        "_written",
        "confirmed",
        "fmt",
        "last_write",
        "on_slow",
        "ponging",
        "read_paused",
        "stream",
        "writing",
        "ws",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: Connection,
        fmt: P.Format,
        limit: int,
        outflow: Outflow | None = None,
        window: int = 0,
    ) -> None:
        self.stream = stream
        self.ws = ws
        self.fmt: P.Format = fmt
        self._limit = limit
        # Lists, not deques: a deque holds a 64-slot block (~600 B) even when empty, on every idle
        # connection; the queue is only ever appended to and cleared whole.
        self._queue: list[bytes] = []
        self._wake = trio.Event()
        self._closing = False
        self._closed = trio.Event()
        self._close_timeout_s = 2.0
        # Scope around the socket write; closing bounds it so a client that stopped
        # reading cannot hold the transport (and its task) forever.
        self._send_scope: trio.CancelScope | None = None
        # Direct writes (frontend.outflow): only on a plain socket, only while the writer task
        # holds no bytes (``writing``), at most one pending flush (``_scheduled``).
        self._outflow = outflow
        self._socket = (
            stream.socket if outflow is not None and isinstance(stream, trio.SocketStream) else None
        )
        self.writing = False
        self._write_began = 0.0  # trio time the writer task's current write began (``writing``)
        self._idle_s = 0.0  # a HEARTBEAT goes out after this long without a write (0: not yet running)
        self._scheduled = False
        # The kernel took less than a direct write offered (the client's receive window and our send
        # buffer are full): the bytes wait on the client, not on this process. Cleared once the
        # writer task has sent the rest.
        self._refused = False
        self._unsent = 0  # bytes queued or held by the writer, not yet handed to the kernel
        self.last_write = trio.current_time()
        # Read receipts (frontend.outflow, "consumption window"): a Ping carrying the byte offset
        # before it goes out every ``window // 4`` bytes; its Pong says the client has read that far.
        self._window = window
        self._probe_every = max(window // 8, 1)  # below the smallest window (Outflow.window)
        self._pushed = 0  # bytes ever queued
        self._written = 0  # bytes ever handed to the kernel
        self._last_probe = 0
        self._probes: list[int] = []  # at most MAX_PROBES, oldest first
        self.confirmed = 0
        self.ponging = False
        self.read_paused = False
        self.on_slow: Callable[[], None] = lambda: self.close(None)
        if outflow is not None:
            outflow.transports.add(self)

    # -- Outlet -------------------------------------------------------------
    def send(self, frame: Encoded, *, force: bool = False) -> bool:
        if self._closing:
            return True  # swallowed: the transport is going away and replay covers it
        if len(self._queue) >= self._limit and not force:
            return False
        self._push(frame.ws.get(self.fmt) or frame_for(frame, self.fmt))
        return True

    def close(self, final: Encoded | None) -> None:
        if self._closing:
            return
        if final is not None:
            # Whatever is still queued is superseded: replay from the log covers it.
            self._forget(sum(map(len, self._queue)))
            self._queue.clear()
            self._push(frame_for(final, self.fmt))
        self._closing = True
        self._wake.set()
        if self._send_scope is not None:
            deadline = trio.current_time() + self._close_timeout_s
            self._send_scope.deadline = min(self._send_scope.deadline, deadline)

    def send_raw(self, data: bytes) -> None:
        """Queue control-frame bytes (pong, close) outside the message limit."""
        if not self._closing:
            self._push(data)

    @property
    def closing(self) -> bool:
        return self._closing

    # -- the queue ----------------------------------------------------------
    def _push(self, data: bytes) -> None:
        self._queue.append(data)
        n = len(data)
        self._unsent += n
        self._pushed += n
        out = self._outflow
        if out is None:
            self._wake.set()
            return
        out.queued(n)
        if self._socket is None or self.writing or self._closing:
            self._wake.set()
        elif not self._scheduled and not self.held:  # held: the next read receipt schedules it
            self._scheduled = True
            out.schedule(self)

    def _forget(self, n: int) -> None:
        """``n`` owed bytes are dropped or written."""
        self._unsent -= n
        if self._outflow is not None:
            self._outflow.drained(n)

    @property
    def unsent(self) -> int:
        return self._unsent

    def _wrote(self, n: int) -> None:
        self._written += n
        self._forget(n)

    def stuck(self, since: float) -> bool:
        """Its unsent bytes wait on the client: unread past the window, refused by the kernel, or
        in a write of the writer task that began at ``since`` or before and has not ended. Bytes
        merely queued for a pass this process has not run yet do not count (``frontend.outflow``)."""
        return self.held or self._refused or (self.writing and self._write_began <= since)

    @property
    def held(self) -> bool:
        """True while a client that answers pings has more than ``window`` bytes written but unread."""
        if not self.ponging or self.read_paused:
            return False
        unread = self._written - self.confirmed
        if unread <= self._window >> 2:
            return False  # within the smallest window: no need to ask for the share
        return unread > (self._outflow.window(self._window) if self._outflow is not None else self._window)

    def _maybe_probe(self) -> None:
        """Queue a Ping carrying the current offset if ``window // 4`` bytes went by since the last."""
        if not self._window or self._closing or self._pushed - self._last_probe < self._probe_every:
            return
        if self.ws.state is not ConnectionState.OPEN:
            return
        offset = self._pushed
        self._last_probe = offset
        self._probes.append(offset)
        if len(self._probes) > MAX_PROBES:
            del self._probes[0]  # a client that does not answer pings must not grow this
        data = self.ws.send(Ping(payload=b"%d" % offset))
        self._queue.append(data)
        n = len(data)
        self._unsent += n
        self._pushed += n
        if self._outflow is not None:
            self._outflow.queued(n)

    def on_pong(self, payload: bytes) -> None:
        """A Pong: if it answers one of our probes, the client has read everything before it."""
        try:
            offset = int(payload)
        except ValueError:
            return  # not ours (an unsolicited pong)
        if offset not in self._probes:
            return
        answered = 0
        while answered < len(self._probes) and self._probes[answered] <= offset:
            answered += 1
        del self._probes[:answered]
        self.confirmed = offset
        self.ponging = True
        self._kick()

    def pause_reading(self, paused: bool) -> None:
        """The reader stops (or resumes) reading: Pongs cannot arrive, so no read receipts are awaited."""
        self.read_paused = paused
        self._kick()

    def _kick(self) -> None:
        """Flush soon if frames are waiting and nothing else will write them."""
        if self._queue and not self.held and not self.writing and not self._scheduled and self._outflow:
            if self._socket is None:
                self._wake.set()
            else:
                self._scheduled = True
                self._outflow.schedule(self)

    def flush(self, now: float) -> None:
        """Outflow: write the queue with one non-blocking send; the writer task sends any rest."""
        self._scheduled = False
        queue = self._queue
        if not queue:
            return
        if self.writing or self._closing or self._socket is None:
            self._wake.set()
            return
        if self.held:
            return  # the next read receipt (Pong) schedules it again
        self._maybe_probe()
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        try:
            # The socket is non-blocking (trio's); this returns what the kernel took, or raises.
            n = os.write(self._socket.fileno(), data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._wake.set()  # broken or closed: the writer task meets the error and ends the transport
            return
        queue.clear()
        if n < len(data):
            queue.append(data[n:] if n else data)
            self._refused = True
            self._wake.set()
        if n:
            self.last_write = now
            self._wrote(n)

    def heartbeat_if_idle(self, now: float) -> None:
        """Outflow's scan: queue the idle HEARTBEAT (RTN23) if nothing was written for ``idle_s``."""
        # An unsent queue (a HEARTBEAT already among it) is not idle: one HEARTBEAT per idle period.
        if self._idle_s and now >= self.last_write + self._idle_s and not self._queue and not self._closing:
            self._push(frame_for(_HEARTBEAT, self.fmt))

    def cut_slow(self) -> None:
        """Outflow: this transport held publishers up past the stall limit."""
        if not self._closing:
            self.on_slow()

    # -- tasks --------------------------------------------------------------
    async def write_loop(self, idle_s: float, close_timeout_s: float) -> None:
        queue = self._queue
        self._close_timeout_s = close_timeout_s
        try:
            if self._outflow is not None:
                # The Outflow's scan sends the idle HEARTBEAT: a deadline per writer task cost a
                # cancel scope and a wake-up per connection and idle period (20,000 connections:
                # 6% of the process, bench/many_channels.py).
                self._idle_s = idle_s
                self._outflow.watch_idle(idle_s)
            while True:
                if not queue and not self._closing and self._outflow is not None:
                    self._wake = trio.Event()
                    await self._wake.wait()
                elif not queue and not self._closing:
                    self._wake = trio.Event()
                    with trio.move_on_at(self.last_write + idle_s):
                        await self._wake.wait()
                    if not queue and not self._closing:
                        if trio.current_time() < self.last_write + idle_s:
                            continue  # direct writes went out meanwhile: not idle
                        self._push(frame_for(_HEARTBEAT, self.fmt))
                if queue:
                    self._maybe_probe()
                    batch = b"".join(queue)
                    queue.clear()
                    self.writing = True
                    self._write_began = trio.current_time()
                    with trio.CancelScope() as scope:
                        self._send_scope = scope
                        if self._closing:
                            scope.deadline = trio.current_time() + close_timeout_s
                        await self.stream.send_all(batch)
                    self._send_scope = None
                    self.writing = False
                    if scope.cancelled_caught:
                        return  # the peer stopped reading while we were closing
                    self.last_write = trio.current_time()
                    self._refused = False
                    self._wrote(len(batch))
                if self._closing and not queue:
                    with trio.move_on_after(close_timeout_s):
                        if self.ws.state is ConnectionState.OPEN:
                            await self.stream.send_all(self.ws.send(CloseConnection(code=1000)))
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._closing = True
            self._forget(self._unsent)
            if self._outflow is not None:
                self._outflow.transports.discard(self)
            self._closed.set()
            await trio.aclose_forcefully(self.stream)


Prepare = Callable[[Mapping[str, str]], Awaitable[Mapping[str, str]]]


async def run_websocket(
    stream: trio.abc.Stream,
    node: FrontendNode,
    params: Mapping[str, str],
    trailing: bytes,
    prepare: Prepare | None = None,
    outflow: Outflow | None = None,
) -> None:
    """Serve one upgraded WebSocket until it closes; the session outlives it.

    ``prepare`` runs before the node answers (a cluster takes a resumed connection over there).
    ``outflow`` writes for the transport and paces it as a publisher (``frontend.outflow``);
    without one, the transport's writer task does every write and reads are never paused.
    """
    cfg = node.config
    if prepare is not None:
        params = await prepare(params)
    fmt: P.Format = "msgpack" if params.get("format") == "msgpack" else "json"
    ws = Connection(ConnectionType.SERVER)
    window = cfg.consumer_window_bytes if outflow is not None else 0
    transport = WebSocketTransport(stream, ws, fmt, cfg.outbox_limit, outflow, window)
    session = node.connect(wall_ms(), params, transport)
    node.wake()
    if session is not None:
        transport.on_slow = lambda: _cut_stalled(node, transport, session)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.write_loop, cfg.max_idle_interval_ms / 1000, cfg.close_timeout_s)
        if session is not None:
            try:
                await _read_loop(stream, ws, transport, node, session, trailing, outflow)
            finally:
                node.transport_lost(wall_ms(), session, transport)
                node.wake()
                transport.close(None)
        # The writer exits once its final frames are flushed (or the peer is gone).


def _cut_stalled(node: FrontendNode, transport: WebSocketTransport, session: Session) -> None:
    """The Outflow's stall rule: cut with a resumable DISCONNECTED 80003, as a full outbox is."""
    error = ErrorInfo.of(
        ErrorCode.SLOW_CONSUMER, "client too slow: publishers stalled on it; resume to continue"
    )
    node.metrics.slow_consumers.inc()
    log.info("connection.slow_consumer", connection_id=session.connection_id, reason="stalled")
    if node.outlets.get(session.connection_id) is transport:
        node.cut(wall_ms(), session, error)
        node.wake()
    else:
        transport.close(Encoded.of(ProtocolMessage(action=Action.DISCONNECTED, error=error)))


def _protocol_error(
    node: FrontendNode, transport: WebSocketTransport, session: Session, exc: Exception
) -> None:
    info = (
        exc.info() if isinstance(exc, RemoteProtocolError) else ErrorInfo.of(ErrorCode.BAD_REQUEST, str(exc))
    )
    node.metrics.protocol_errors.labels(transport="websocket").inc()
    node.metrics.errors_sent.labels(code=str(info.code)).inc()
    log.warning("frame.rejected", connection_id=session.connection_id, code=info.code, reason=info.message)
    transport.close(Encoded.of(ProtocolMessage(action=Action.ERROR, error=info)))


async def _read_socket(sock: trio.socket.SocketType, wait_first: bool) -> bytes:
    """The next bytes from a plain socket (``kernel.sockread``). ``wait_first`` (the last read was
    short, so a read now would most often find nothing): wait, then read; else yield once and read
    (fairness towards the other connections)."""
    if wait_first:
        await trio.lowlevel.wait_readable(sock)
    else:
        await trio.lowlevel.checkpoint()
    return await read_ready(sock, READ_CHUNK)


async def _read_loop(
    stream: trio.abc.Stream,
    ws: Connection,
    transport: WebSocketTransport,
    node: FrontendNode,
    session: Session,
    trailing: bytes,
    outflow: Outflow | None,
) -> None:
    max_size = node.config.max_frame_size
    parts: list[bytes | str] = []
    size = 0
    data = trailing
    while not transport.closing:
        published = False
        if data:
            node.wake()  # the frames below are inputs of this same step: the ticker re-reads after it
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(bytes(event.data) if isinstance(event.data, bytearray) else event.data)
                    size += len(event.data)
                    if size > max_size:
                        _protocol_error(
                            node,
                            transport,
                            session,
                            RemoteProtocolError(f"frame exceeds the maximum of {max_size} bytes"),
                        )
                        return
                    if not event.message_finished:
                        continue
                    text = isinstance(event, TextMessage)
                    payload: bytes | str = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                    parts, size = [], 0
                    fmt: P.Format = "json" if text else transport.fmt
                    try:
                        pm = P.decode(payload, fmt, max_size=max_size)
                        published = published or pm.action in P.ACKED_ACTIONS
                        node.handle(wall_ms(), session, pm)
                    except RemoteProtocolError as exc:
                        _protocol_error(node, transport, session, exc)
                        return
                elif isinstance(event, Pong):
                    transport.on_pong(bytes(event.payload))
                elif isinstance(event, Ping):
                    transport.send_raw(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if event.code in (1002, 1007, 1009):
                        _protocol_error(
                            node,
                            transport,
                            session,
                            RemoteProtocolError(f"websocket protocol violation: {event.reason}"),
                        )
                    elif ws.state is ConnectionState.REMOTE_CLOSING:
                        transport.send_raw(ws.send(event.response()))
                    return
        if published and outflow is not None and outflow.paused:
            # Flow control: the subscribers are behind; let TCP hold this publisher back.
            transport.pause_reading(True)
            await outflow.wait_resumed()
            transport.pause_reading(False)
        try:
            if isinstance(stream, trio.SocketStream):
                data = await _read_socket(stream.socket, len(data) < READ_CHUNK)
            else:
                data = bytes(await stream.receive_some(READ_CHUNK))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            return

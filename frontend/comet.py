"""Comet: the HTTP long-poll transport (PROTOCOL.md section 6), as a node Outlet.

Theory of operation
-------------------
A Comet connection is a series of separate HTTP requests that the router pins
to this frontend: ``GET /comet/connect`` opens it, then ``/comet/<key>/recv``
long-polls, ``POST /comet/<key>/send`` carries client frames, and ``/close`` or
``/disconnect`` end it. All of one connection's requests form ONE transport:
one ``CometTransport`` bound to the session as its outlet, exactly like a
WebSocket. The invariants:

- Frames leave only through ``/recv`` (and the connect answer), in queue order,
  each body a JSON array followed by ``\\n`` (Node's streaming reader splits on
  it and drops a last line without one). ``/send`` answers ``[]``: ACKs wait
  for the next recv, so two bodies in flight at once never carry frames that
  the client could apply out of order.
- At most one recv is pending per transport; a newer one answers the older
  ``[]``. A recv is held until a frame is queued or ``maxIdleInterval`` passes
  (then ``[{"action":0}]``, RTN23); each completed recv counts as activity.
- A transport with no pending recv for ``comet_transport_timeout_ms`` is gone
  (the client left without a word): ``node.transport_lost`` keeps the session
  for the TTL, as for a dropped WebSocket. Frames lost in a recv answer that
  never reached the client are covered by channelSerial replay on resume (RTL15b,
  RTN15c6) and by the client's re-sent publishes (RTN19a).
- A request whose key is not the session's current key, names another owner or
  finds no live Comet transport is answered in-band with DISCONNECTED, so the
  client resumes through ``/comet/connect?resume=`` (which may take the
  connection over, or report 80008).
- A resume on the same frontend keeps the key, so the key alone does not say
  which transport a request belongs to. A request that a router forwarded
  before this transport's connect (``kernel.http.FORWARDED``: router and time),
  or a recv/send forwarded no later than the lane's previous one, is not this
  transport's: it was held in a partition's TCP buffers while its client gave
  up and resumed, or the router sent it again after the first copy was
  answered. Served, a late recv took the frames queued for the live one, which
  never reached any client (chaos seed 1490494864: a silent gap of 3), and a
  late send put its publishes ahead of the re-sent ones in the ACK order, so
  the client took an ACK for a later msgSerial as the answer to its earlier
  publishes (seed 459897038: ACKs with no serials). It is answered in-band with
  DISCONNECTED (reaching, if anyone, a client whose recv was lost, which then
  resumes) and the transport is left alone. Two routers' clocks are compared
  with ``FORWARDED_SKEW_US`` of slack; one router's exactly.

``CometRegistry`` is the core (no I/O; ``now_ms`` passed in); ``CometService``
is the thin trio driver the front door calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import structlog
import trio

from frontend.clock import wall_ms
from frontend.node import FrontendNode
from frontend.session import Session
from kernel import protocol as P
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.keys import InvalidKey
from kernel.protocol import Action, Encoded, ProtocolMessage

log = structlog.get_logger("continuity.frontend")

COMET_PREFIX = "/comet/"
OPS = frozenset({"recv", "send", "close", "disconnect"})
EMPTY = b"[]\n"
HEARTBEAT = b'[{"action":0}]\n'
SWEEP_MAX_S = 1.0
# Tolerated difference between two routers' clocks when comparing their FORWARDED stamps (the peer
# links' CLOCK_SKEW_MS); stamps of one router are compared exactly.
FORWARDED_SKEW_US = 1_000_000

Prepare = Callable[[Mapping[str, str]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CometPath:
    """A parsed ``/comet/...`` path: ``op`` is ``connect`` (no key) or one of OPS (with the key)."""

    op: str
    key: str | None = None


def parse_path(path: str) -> CometPath | None:
    """``/comet/connect`` or ``/comet/<key>/<op>``; None for anything else under ``/comet/``.

    The key travels raw in the path (ably-js inserts it unescaped); a percent-escaped one is
    decoded, as the router does.
    """
    if not path.startswith(COMET_PREFIX):
        return None
    rest = path[len(COMET_PREFIX) :]
    if rest == "connect":
        return CometPath(op="connect")
    key, sep, op = rest.rpartition("/")
    if not sep or not key or "/" in key or op not in OPS:
        return None
    return CometPath(op=op, key=unquote(key))


def array_body(payloads: list[bytes]) -> bytes:
    """A Comet body: the JSON array of already-encoded ProtocolMessages, then ``\\n``."""
    return b"[" + b",".join(payloads) + b"]\n"


def error_body(action: Action, error: ErrorInfo) -> bytes:
    """An in-band error: ``[{"action":<action>,"error":{...}}]\\n``."""
    return array_body([Encoded.of(ProtocolMessage(action=action, error=error)).payload("json")])


class CometTransport:
    """Outlet for one Comet connection; see FrontendNode.Outlet. Frames wait here for a recv."""

    fmt: P.Format = "json"

    def __init__(self, session: Session | None, limit: int, now_ms: int) -> None:
        self.session = session
        self._limit = limit
        self._queue: deque[bytes] = deque()
        self.closing = False
        # The pending recv's token (None: no recv pending) and when the last one ended.
        self.recv_token: object | None = None
        self.idle_since_ms = now_ms
        self.wake = trio.Event()
        # Who forwarded the connect and when (kernel.http.FORWARDED), and each lane's latest request.
        self.opened: tuple[str, int] | None = None
        self._latest: dict[str, tuple[str, int]] = {}

    def late(self, op: str, sent: tuple[str, int] | None) -> str | None:
        """Why a request forwarded as ``sent`` is not this transport's own (None: it may be); a
        recv or send that is its own becomes its lane's latest."""
        if sent is None:
            return None
        if self.opened is not None and _before(sent, self.opened):
            return "forwarded before this transport's connect"
        if op in ("recv", "send"):
            latest = self._latest.get(op)
            if latest is not None and latest[0] == sent[0] and sent[1] <= latest[1]:
                return f"forwarded no later than this transport's previous {op}"
            self._latest[op] = sent
        return None

    # -- Outlet -------------------------------------------------------------
    def send(self, frame: Encoded, *, force: bool = False) -> bool:
        if self.closing:
            return True  # swallowed: the transport is going away and replay covers it
        if len(self._queue) >= self._limit and not force:
            return False
        self._queue.append(frame.payload("json"))
        self.wake.set()
        return True

    def close(self, final: Encoded | None) -> None:
        if self.closing:
            return
        if final is not None:
            self._queue.clear()  # superseded: replay from the log covers it
            self._queue.append(final.payload("json"))
        self.closing = True
        self.wake.set()

    # -- recv bookkeeping ---------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._queue)

    def ready(self) -> bool:
        """Whether a recv can be answered now (frames queued, or the transport closed)."""
        return bool(self._queue) or self.closing

    def take(self) -> bytes | None:
        """Everything queued as one body, or None when nothing is queued."""
        if not self._queue:
            return None
        body = array_body(list(self._queue))
        self._queue.clear()
        return body

    def begin_recv(self) -> object:
        """A recv arrived: it supersedes any pending one (which then answers ``[]``)."""
        token = object()
        self.recv_token = token
        self.wake.set()  # wakes the superseded recv, if any
        self.wake = trio.Event()
        return token

    def end_recv(self, token: object, now_ms: int) -> None:
        if self.recv_token is token:
            self.recv_token = None
            self.idle_since_ms = now_ms

    def stale_at(self, timeout_ms: int) -> int | None:
        """When this transport counts as gone for lack of a recv; None while one is pending."""
        return None if self.recv_token is not None else self.idle_since_ms + timeout_ms


def _before(sent: tuple[str, int], mark: tuple[str, int]) -> bool:
    """Whether ``sent`` was forwarded before ``mark``: exactly by one router's clock, with
    ``FORWARDED_SKEW_US`` of slack across two routers' (a request in doubt is served)."""
    if sent[0] == mark[0]:
        return sent[1] < mark[1]
    return sent[1] < mark[1] - FORWARDED_SKEW_US


class CometRegistry:
    """This frontend's Comet transports by connectionId, and the key lookup of each request."""

    def __init__(self, node: FrontendNode) -> None:
        self.node = node
        self.transports: dict[str, CometTransport] = {}

    def open(
        self, now_ms: int, params: Mapping[str, str], sent: tuple[str, int] | None = None
    ) -> tuple[CometTransport, Session | None]:
        """``/comet/connect``: a new transport, bound by the node (CONNECTED or ERROR queued on it)."""
        transport = CometTransport(None, self.node.config.outbox_limit, now_ms)
        transport.opened = sent
        session = self.node.connect(now_ms, params, transport)
        if session is not None:
            transport.session = session
            self.transports[session.connection_id] = transport
            log.info(
                "comet.connect",
                connection_id=session.connection_id,
                resume=bool(params.get("resume") or params.get("recover")),
                stream=params.get("stream") != "false",
            )
        return transport, session

    def lookup(self, key_text: str) -> CometTransport | ErrorInfo:
        """The live transport a request's key names, or the error to answer in-band (DISCONNECTED)."""
        node = self.node
        try:
            key = node.signer.verify(key_text)
        except InvalidKey as exc:
            return ErrorInfo.of(ErrorCode.INVALID_CONNECTION_KEY, f"invalid connection key: {exc}")
        if not node.owns(key):
            return ErrorInfo.of(ErrorCode.DISCONNECTED, "connection served by another frontend; resume")
        session = node.sessions.get(key.connection_id)
        if session is None or session.terminal or session.key != key_text:
            return ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "connection key unknown or stale; resume")
        session.key_confirmed = True  # a request naming the new key: its CONNECTED reached the client
        transport = self.transports.get(key.connection_id)
        if transport is None or (transport.closing and not transport.queued):
            self.forget(transport)
            return ErrorInfo.of(ErrorCode.DISCONNECTED, "comet transport closed; resume")
        return transport

    def forget(self, transport: CometTransport | None) -> None:
        if transport is None or transport.session is None:
            return
        conn_id = transport.session.connection_id
        if self.transports.get(conn_id) is transport:
            del self.transports[conn_id]

    def lose(self, now_ms: int, transport: CometTransport, reason: str) -> None:
        """The transport is gone (state kept for the TTL): tell the node, forget it."""
        self.forget(transport)
        transport.close(None)
        if transport.session is not None:
            if self.node.outlets.get(transport.session.connection_id) is transport:
                log.info("comet.transport_lost", connection_id=transport.session.connection_id, reason=reason)
                self.node.metrics.comet_transports_lost.inc()
            self.node.transport_lost(now_ms, transport.session, transport)

    def expire(self, now_ms: int) -> None:
        """Lose every transport that went ``comet_transport_timeout_ms`` without a pending recv."""
        timeout = self.node.config.comet_transport_timeout_ms
        for t in list(self.transports.values()):
            at = t.stale_at(timeout)
            if at is not None and at <= now_ms:
                self.lose(now_ms, t, "no recv")

    def next_deadline(self) -> int | None:
        timeout = self.node.config.comet_transport_timeout_ms
        deadlines = [at for t in self.transports.values() if (at := t.stale_at(timeout)) is not None]
        return min(deadlines, default=None)

    def deliver(self, transport: CometTransport) -> bytes:
        """Answer a recv from ``transport``: its queue, or DISCONNECTED/[] once closed and drained."""
        body = transport.take()
        if transport.closing:
            self.forget(transport)
            if body is None:
                return error_body(
                    Action.DISCONNECTED,
                    ErrorInfo.of(ErrorCode.DISCONNECTED, "comet transport closed; resume"),
                )
        return body if body is not None else EMPTY

    def handle_send(self, now_ms: int, transport: CometTransport, body: bytes) -> bytes:
        """``POST /send``: feed each ProtocolMessage to the node; frames go out on the next recv."""
        node = self.node
        session = transport.session
        assert session is not None
        try:
            for pm in P.decode_json_array(body, max_size=node.config.max_frame_size):
                node.handle(now_ms, session, pm)
        except RemoteProtocolError as exc:
            info = exc.info()
            node.metrics.protocol_errors.labels(transport="comet").inc()
            node.metrics.errors_sent.labels(code=str(info.code)).inc()
            log.warning(
                "frame.rejected", connection_id=session.connection_id, code=info.code, reason=info.message
            )
            final = Encoded.of(ProtocolMessage(action=Action.ERROR, error=info))
            transport.close(final)
            self.lose(now_ms, transport, "bad send")
            return array_body([final.payload("json")])
        return EMPTY

    def handle_close(self, now_ms: int, transport: CometTransport) -> bytes:
        """``GET /close``: CLOSE (RTN12): the node disposes the session and queues CLOSED."""
        assert transport.session is not None
        self.node.handle(now_ms, transport.session, ProtocolMessage(action=Action.CLOSE))
        self.forget(transport)
        return transport.take() or EMPTY

    def handle_disconnect(self, now_ms: int, transport: CometTransport) -> bytes:
        """``GET /disconnect``: the transport is gone, the state kept for a resume."""
        self.lose(now_ms, transport, "disconnect")
        return EMPTY


class CometService:
    """The trio driver: one method per endpoint, each returning the 200 body to send."""

    def __init__(self, node: FrontendNode, prepare: Prepare | None = None) -> None:
        self.node = node
        self.registry = CometRegistry(node)
        self.prepare = prepare
        self._changed = trio.Event()

    async def handle(
        self,
        method: bytes,
        path: CometPath,
        params: Mapping[str, str],
        body: bytes,
        sent: tuple[str, int] | None = None,
    ) -> bytes:
        """Answer one Comet request (always a 200 JSON array body; errors are in-band). ``sent``:
        the router's ``kernel.http.FORWARDED`` stamp, if a router forwarded it."""
        metrics = self.node.metrics
        metrics.comet_requests.labels(kind=path.op).inc()
        if path.op == "connect":
            return await self.connect(params, sent)
        assert path.key is not None
        found = self.registry.lookup(path.key)
        if isinstance(found, ErrorInfo):
            log.info("comet.refused", op=path.op, code=found.code, reason=found.message)
            return error_body(Action.DISCONNECTED, found)
        why = found.late(path.op, sent)
        if why is not None:
            connection_id = found.session.connection_id if found.session is not None else None
            log.info("comet.late_request", op=path.op, connection_id=connection_id, why=why)
            metrics.comet_requests.labels(kind="late").inc()
            return error_body(
                Action.DISCONNECTED, ErrorInfo.of(ErrorCode.DISCONNECTED, f"comet request {why}; resume")
            )
        now = wall_ms()
        if path.op == "recv":
            return await self.recv(found)
        self.node.wake()  # send, close and disconnect feed the node in this same step
        if path.op == "send":
            if method != b"POST":
                return error_body(Action.ERROR, ErrorInfo.of(ErrorCode.BAD_REQUEST, "send needs POST"))
            return self.registry.handle_send(now, found, body)
        if path.op == "close":
            return self.registry.handle_close(now, found)
        return self.registry.handle_disconnect(now, found)

    async def connect(self, params: Mapping[str, str], sent: tuple[str, int] | None = None) -> bytes:
        """Bind a new transport; answer at once with CONNECTED (or ERROR) and whatever came with it.

        Browser poll mode (``stream=false``) needs the answer to end; Node's streaming mode is
        served the same way (the client re-issues ``/recv`` once a body ends).
        """
        if self.prepare is not None:
            params = await self.prepare(params)
        transport, _ = self.registry.open(wall_ms(), params, sent)
        self.node.wake()
        transport.idle_since_ms = wall_ms()
        self._changed.set()
        return self.registry.deliver(transport) if transport.closing else (transport.take() or EMPTY)

    async def recv(self, transport: CometTransport) -> bytes:
        """Hold until frames are queued or ``maxIdleInterval`` passes (then a HEARTBEAT)."""
        token = transport.begin_recv()
        idle_s = self.node.config.max_idle_interval_ms / 1000
        try:
            with trio.move_on_after(idle_s):
                while not transport.ready():
                    if transport.wake.is_set():
                        transport.wake = trio.Event()
                    await transport.wake.wait()
                    if transport.recv_token is not token:
                        return EMPTY  # superseded by a newer recv
            if transport.recv_token is not token:
                return EMPTY
            if not transport.ready():
                return HEARTBEAT
            return self.registry.deliver(transport)
        finally:
            transport.end_recv(token, wall_ms())
            self._changed.set()

    async def run(self) -> None:
        """Lose transports that stopped polling; wakes by their deadlines."""
        while True:
            now = wall_ms()
            self.registry.expire(now)
            self.node.wake()
            deadline = self.registry.next_deadline()
            wait_s = SWEEP_MAX_S if deadline is None else min(SWEEP_MAX_S, max(deadline - now, 10) / 1000)
            self._changed = trio.Event()
            with trio.move_on_after(wait_s):
                await self._changed.wait()

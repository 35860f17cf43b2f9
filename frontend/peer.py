"""PeerBus: authenticated, reconnecting TCP links between frontends, on trio.

Each node dials every peer it needs to talk to and *sends* only on its own
dialed link, so whatever A sends B (requests, replies, pushes) arrives in
order. Inbound links are only read. Requests carry ids and a deadline; a lost
link or an elapsed deadline fails the request at once (``on_reply(False,
Refused(...))``), so callers retry rather than hang.

This is the edge of the typed peer protocol (``peerops``): requests and pushes
are sent as records and decoded into records here, once; one that does not
decode is counted and dropped (a request is answered ``BAD_REQUEST``).
Handlers run synchronously in the inbound reader task: the node core stays
free of ``await``.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
import trio

from frontend import peerops as O
from frontend import peerwire as W
from frontend.clock import wall_ms
from kernel.errors import RemoteProtocolError

log = structlog.get_logger("continuity.peer")

ReplyCallback = Callable[[bool, Any], None]
RequestHandler = Callable[[str, O.PeerOp, Callable[[bool, Any], None]], None]
PushHandler = Callable[[str, O.PeerOp], None]

RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 1.0
CONNECT_TIMEOUT_S = 2.0


def _refused(exc: BaseException) -> bool:
    """True when every connect attempt was actively refused (not a timeout or an unreachable net)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        return all(isinstance(e, ConnectionRefusedError) for e in cause.exceptions)
    return False


class PeerError(Exception):
    """A request to a peer failed: link lost, refused, timed out, or the peer said no."""


DEADLINE_ARG = "_deadline_ms"  # added to every request's args: the sender's wall-clock deadline
CLOCK_SKEW_MS = 1_000  # tolerated difference between two hosts' clocks


class _Link:
    """The outbound link to one peer: a queue and a task that keeps a socket for it."""

    def __init__(self, peer: str, addr: tuple[str, int]) -> None:
        self.peer = peer
        self.addr = addr
        self.queue: deque[bytes] = deque()
        self.wake = trio.Event()
        self.connected = False
        self.closed = False
        self.cancel = trio.CancelScope()

    def send(self, data: bytes) -> None:
        self.queue.append(data)
        self.wake.set()


class PeerBus:
    def __init__(
        self,
        node_id: str,
        secrets: Sequence[str],
        *,
        on_request: RequestHandler,
        on_push: PushHandler,
        on_rejected: Callable[[str], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        on_connected: Callable[[str], None] | None = None,
        on_bad_op: Callable[[str], None] | None = None,
        on_input: Callable[[], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._secrets = list(secrets)
        self._on_request = on_request
        self.stale_requests = 0  # requests dropped because they arrived after their deadline
        self.bad_ops = 0  # requests and pushes that did not decode (answered BAD_REQUEST / dropped)
        self._on_push = on_push
        self._on_rejected = on_rejected or (lambda reason: None)
        # A refused TCP connect means nothing listens there: the peer process is gone.
        self._on_refused = on_refused or (lambda peer: None)
        self._on_connected = on_connected or (lambda peer: None)
        self._on_bad_op = on_bad_op or (lambda reason: None)
        # Called whenever a handler or a reply callback runs (the node's timer driver re-reads its
        # deadline: frontend/ticker.py); in the same step, so before or after the callback alike.
        self._on_input = on_input or (lambda: None)
        self._addresses: dict[str, tuple[str, int]] = {}
        self._links: dict[str, _Link] = {}
        self._pending: dict[int, tuple[str, float, ReplyCallback]] = {}
        # (deadline, req_id) of every request sent; the sweeper sleeps until the first one, woken
        # early only when a request with an earlier deadline is sent (no polling).
        self._deadlines: list[tuple[float, int]] = []
        self._earlier_deadline = trio.Event()
        self._next_id = 1
        self._nursery: trio.Nursery | None = None
        self.rejected_links = 0
        self.port = 0

    # -- addresses ------------------------------------------------------------
    def set_addresses(self, addresses: dict[str, tuple[str, int]]) -> None:
        """Peers we may talk to, by node id. Links to vanished peers are closed."""
        self._addresses = {k: v for k, v in addresses.items() if k != self.node_id}
        for peer, link in list(self._links.items()):
            if self._addresses.get(peer) != link.addr:
                self._close_link(link, "peer left the map or moved")

    def _close_link(self, link: _Link, reason: str) -> None:
        link.closed = True
        link.cancel.cancel()
        self._links.pop(link.peer, None)
        self._fail_pending(link.peer, reason)

    def _fail_pending(self, peer: str, reason: str) -> None:
        self._on_input()
        for req_id, (p, _, cb) in list(self._pending.items()):
            if p == peer:
                del self._pending[req_id]
                cb(False, O.Refused(O.Refusal.LOST, reason))

    def _link(self, peer: str) -> _Link | None:
        link = self._links.get(peer)
        if link is not None:
            return link
        addr = self._addresses.get(peer)
        if addr is None or self._nursery is None:
            return None
        link = self._links[peer] = _Link(peer, addr)
        self._nursery.start_soon(self._run_link, link)
        return link

    # -- sending --------------------------------------------------------------
    def request(self, peer: str, op: O.PeerOp, on_reply: ReplyCallback, timeout_s: float = 5.0) -> None:
        """Send a request; ``on_reply(ok, result)`` is called exactly once (a failure is ``Refused``)."""
        link = self._link(peer)
        if link is None:
            on_reply(False, O.Refused(O.Refusal.UNSENT, f"no link to {peer}"))
            return
        req_id = self._next_id
        self._next_id += 1
        deadline = trio.current_time() + timeout_s
        self._pending[req_id] = (peer, deadline, on_reply)
        if not self._deadlines or deadline < self._deadlines[0][0]:
            self._earlier_deadline.set()
        heapq.heappush(self._deadlines, (deadline, req_id))
        if len(self._deadlines) > 2 * len(self._pending) + 1024:
            # Answered requests stay in the heap until their deadline: drop them at once and then.
            self._deadlines = [(d, r) for r, (_, d, _) in self._pending.items()]
            heapq.heapify(self._deadlines)
        # The receiver drops a request that arrives after this: a partition can hold it in a TCP
        # buffer for as long as it lasts, and by then the caller has retried (bench/chaos saw a
        # publish executed 25 s late, past the dedupe window, numbered twice).
        stamped = {**op.to_args(), DEADLINE_ARG: wall_ms() + int(timeout_s * 1000)}
        link.send(W.encode(W.Request(req_id=req_id, op=op.OP, args=stamped)))

    async def call(self, peer: str, op: O.PeerOp, timeout_s: float = 5.0) -> Any:
        """Send a request and wait for its result; raise PeerError on failure."""
        done = trio.Event()
        box: list[Any] = []

        def on_reply(ok: bool, result: Any) -> None:
            box.append((ok, result))
            done.set()

        self.request(peer, op, on_reply, timeout_s)
        await done.wait()
        ok, result = box[0]
        if not ok:
            raise PeerError(result.reason if isinstance(result, O.Refused) else str(result))
        return result

    def push(self, peer: str, op: O.PeerOp) -> bool:
        """Send a one-way message; False if there is no way to reach ``peer``."""
        link = self._link(peer)
        if link is None:
            return False
        link.send(W.encode(W.Push(op=op.OP, args=op.to_args())))
        return True

    def _reply(self, peer: str, req_id: int, ok: bool, result: Any) -> None:
        link = self._link(peer)
        if link is not None:
            if isinstance(result, O.Refused):
                result = result.to_wire()
            link.send(W.encode(W.Reply(req_id=req_id, ok=ok, result=result)))

    # -- tasks ----------------------------------------------------------------
    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept inbound links and run outbound ones until cancelled; reports the bound port."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._sweep)
            await nursery.start(trio.serve_listeners, self._accept, listeners)
            task_status.started(self.port)

    async def _sweep(self) -> None:
        """Time requests out at their deadlines: sleep until the first, or until an earlier one."""
        while True:
            self._earlier_deadline = trio.Event()
            first = self._deadlines[0][0] if self._deadlines else float("inf")
            with trio.move_on_at(first):
                await self._earlier_deadline.wait()
            now = trio.current_time()
            self._on_input()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, req_id = heapq.heappop(self._deadlines)
                pending = self._pending.pop(req_id, None)  # answered or failed already: nothing
                if pending is not None:
                    peer, _, cb = pending
                    cb(False, O.Refused(O.Refusal.LOST, f"request to {peer} timed out"))

    async def _run_link(self, link: _Link) -> None:
        delay = RECONNECT_MIN_S
        with link.cancel:
            while not link.closed:
                try:
                    with trio.fail_after(CONNECT_TIMEOUT_S):
                        stream = await trio.open_tcp_stream(*link.addr)
                except (OSError, trio.TooSlowError) as exc:
                    log.debug("peer.connect_failed", peer=link.peer, reason=str(exc))
                    if _refused(exc):
                        self._on_refused(link.peer)
                    self._fail_pending(link.peer, f"cannot connect to {link.peer}")
                    link.queue.clear()
                    await trio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                delay = RECONNECT_MIN_S
                link.connected = True
                self._on_connected(link.peer)
                self._on_input()
                try:
                    await stream.send_all(
                        W.encode_hello(self._secrets[0], self.node_id, wall_ms(), os.urandom(12), self.port)
                    )
                    while True:
                        if not link.queue:
                            link.wake = trio.Event()
                            await link.wake.wait()
                        batch = b"".join(link.queue)
                        link.queue.clear()
                        await stream.send_all(batch)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    log.info("peer.link_lost", peer=link.peer)
                finally:
                    link.connected = False
                    await trio.aclose_forcefully(stream)
                # Whatever was in flight may be lost: fail it so callers retry.
                self._fail_pending(link.peer, f"link to {link.peer} lost")
                link.queue.clear()
        self._links.pop(link.peer, None) if self._links.get(link.peer) is link else None

    async def _accept(self, stream: trio.SocketStream) -> None:
        reader = W.FrameReader()
        peer: str | None = None
        try:
            while True:
                data = await stream.receive_some(262_144)
                if not data:
                    return
                reader.feed(data)
                for body in reader.frames():
                    if peer is None:
                        hello = W.verify_hello(self._secrets, body, wall_ms())
                        peer = hello.node_id
                        if peer not in self._addresses:
                            # Not in our map yet (it just joined): answer it where it listens.
                            host = stream.socket.getpeername()[0]
                            self._addresses[peer] = (host, hello.listen_port)
                        log.info("peer.link_accepted", peer=peer)
                        continue
                    self._dispatch(peer, W.parse(body))
        except W.PeerProtocolError as exc:
            self.rejected_links += 1
            self._on_rejected(str(exc))
            log.warning("peer.link_rejected", peer=peer, reason=str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    def _dispatch(self, peer: str, frame: W.Request | W.Reply | W.Push) -> None:
        self._on_input()
        if isinstance(frame, W.Reply):
            pending = self._pending.get(frame.req_id)
            if pending is not None and pending[0] == peer:
                del self._pending[frame.req_id]
                result = frame.result if frame.ok else O.Refused.from_wire(frame.result)
                pending[2](frame.ok, result)
        elif isinstance(frame, W.Request):
            req_id = frame.req_id
            deadline = frame.args.get(DEADLINE_ARG)
            if isinstance(deadline, int) and wall_ms() > deadline + CLOCK_SKEW_MS:
                self.stale_requests += 1
                log.warning("peer.stale_request", peer=peer, op=frame.op, late_ms=wall_ms() - deadline)
                return  # its caller timed out long ago and has retried: never execute it now
            try:
                op = O.decode(frame.op, frame.args)
            except RemoteProtocolError as exc:
                self._bad_op(peer, frame.op, exc)
                self._reply(peer, req_id, False, O.Refused(O.Refusal.BAD_REQUEST, str(exc)))
                return
            self._on_request(peer, op, lambda ok, result: self._reply(peer, req_id, ok, result))
        else:
            try:
                op = O.decode(frame.op, frame.args)
            except RemoteProtocolError as exc:
                self._bad_op(peer, frame.op, exc)
                return
            self._on_push(peer, op)

    def _bad_op(self, peer: str, op: str, exc: Exception) -> None:
        self.bad_ops += 1
        self._on_bad_op(str(exc))
        log.warning("peer.bad_op", peer=peer, op=op[:40], reason=str(exc))

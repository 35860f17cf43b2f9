"""The simulation's clock and peer network: virtual time and a seeded in-memory ``Bus``.

Theory of operation
-------------------
``Scheduler`` is a discrete-event loop in virtual milliseconds: ``at(t, fn)``
queues a call, ``run_until(t)`` pops them in (time, insertion) order. Nothing
reads a real clock, and every random choice comes from one seeded
``random.Random``, so a run is a pure function of its seed and fault schedule.

``SimNet`` carries peer messages between frontends as a ``PeerBus`` would: a
link from A to B is one ordered stream (TCP), with a seeded latency per
message that never lets a message overtake the previous one on its link. A
partition holds a link's messages (a TCP buffer) until it heals, so a request
may arrive after its sender gave up, exactly the case a1febb0 fixed: the
receiver drops a request past its deadline, as ``PeerBus`` does. A link reset
drops what is in flight on it and fails the requests awaiting a reply on it.
A message to a killed process is lost, and its sender's requests fail as a
refused connect would (and the sender marks the peer down, DESIGN 4.2).

``SimBus`` is one node's endpoint; it implements ``bus.Bus``. Each
record crosses the wire encoded (msgpack of ``to_args``) and is decoded at the
receiving edge with ``peerops.decode``, so the simulation runs the same decode
and dispatch as the real links.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from frontend import peerops as O
from frontend.peer import CLOCK_SKEW_MS
from kernel.errors import RemoteProtocolError

if TYPE_CHECKING:
    from frontend.node import FrontendNode


class SimRandom(random.Random):
    """``random.Random`` whose ``randint`` skips ``randrange``'s argument checks and calls: the same
    draws (CPython's ``randint(a, b)`` is ``a + _randbelow(b - a + 1)``, and ``_randbelow(n)`` draws
    ``n.bit_length()`` bits until they are below ``n``; ``tests/sim`` holds them equal): 0.25 us a draw,
    Random's 0.71 us. Every message's latency is one, so the simulation draws millions."""

    def randint(self, a: int, b: int) -> int:
        n = b - a + 1
        k = n.bit_length()
        r = self.getrandbits(k)
        while r >= n:
            r = self.getrandbits(k)
        return a + r


class Scheduler:
    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = 0
        self.events = 0

    def at(self, t: int, fn: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t if t > self.now else self.now, self._order, fn))

    def run_until(self, end: int) -> None:
        heap, pop, ran = self._heap, heapq.heappop, 0
        try:
            while heap and heap[0][0] <= end:
                t, _, fn = pop(heap)
                self.now = t
                ran += 1
                fn()
        finally:
            self.events += ran  # counted here, not per event: the loop runs millions
        self.now = max(self.now, end)

    def step(self, end: int) -> bool:
        """Run the next event due by ``end``; False (time moved to ``end``) when there is none."""
        if not self._heap or self._heap[0][0] > end:
            self.now = max(self.now, end)
            return False
        t, _, fn = heapq.heappop(self._heap)
        self.now = t
        self.events += 1
        fn()
        return True


_PACKER = msgpack.Packer(use_bin_type=True)  # packb() would build one per message


def _wire(obj: Any, pack: Callable[[Any], bytes] = _PACKER.pack) -> Any:
    return msgpack.unpackb(pack(obj), raw=False, strict_map_key=False)


@dataclass(slots=True)
class _Pending:
    peer: str
    on_reply: Callable[[bool, Any], None]
    link_gen: int


@dataclass(slots=True)
class _Link:
    last_arrival: int = 0
    gen: int = 0  # bumped by a reset: messages of an older generation are dropped
    held: list[Callable[[], None]] = field(default_factory=list)  # held by a partition


class SimNet:
    def __init__(self, sched: Scheduler, rng: random.Random, latency_ms: tuple[int, int] = (1, 15)) -> None:
        self.sched = sched
        self.rng = rng
        self.latency_ms = latency_ms
        self.nodes: dict[str, FrontendNode] = {}  # live processes by node id
        self.group: dict[str, int] = {}  # node -> partition group; absent: reachable by all
        self._links: dict[tuple[str, str], _Link] = {}
        self.buses: dict[str, SimBus] = {}
        self.after_input: Callable[[str], None] = lambda node_id: None  # the world re-arms its timer
        self.stats = {"sent": 0, "held": 0, "stale_dropped": 0, "reset_dropped": 0, "bad_ops": 0}

    def reachable(self, a: str, b: str) -> bool:
        return self.group.get(a, -1) == self.group.get(b, -1)

    def link(self, a: str, b: str) -> _Link:
        link = self._links.get((a, b))
        if link is None:
            link = self._links[(a, b)] = _Link()
        return link

    def send(self, src: str, dst: str, deliver: Callable[[], None]) -> None:
        """Queue ``deliver`` on the link src->dst: ordered, delayed, held by partitions."""
        self.stats["sent"] += 1
        link = self._links.get((src, dst)) or self.link(src, dst)
        gen = link.gen
        lo, hi = self.latency_ms
        t = self.sched.now + self.rng.randint(lo, hi)
        if t < link.last_arrival:
            t = link.last_arrival
        link.last_arrival = t

        def arrive() -> None:
            if link.gen != gen or dst not in self.nodes or src not in self.nodes:
                return
            if not self.reachable(src, dst) or link.held:
                link.held.append(deliver)
                self.stats["held"] += 1
                return
            deliver()

        self.sched.at(t, arrive)

    def heal(self) -> None:
        self.group = {}
        for link in list(self._links.values()):
            held, link.held = link.held, []
            for deliver in held:
                deliver()

    def reset_link(self, a: str, b: str) -> None:
        """The TCP connections between a and b are lost: in-flight messages and pending requests fail."""
        for src, dst in ((a, b), (b, a)):
            link = self.link(src, dst)
            link.gen += 1
            self.stats["reset_dropped"] += len(link.held)
            link.held = []
            bus = self.buses.get(src)
            if bus is not None:
                bus.fail_pending(dst, "link lost")

    def process_gone(self, node_id: str) -> None:
        """A process died: every link to and from it is lost."""
        for other in list(self.buses):
            if other != node_id:
                self.reset_link(node_id, other)
        self.buses.pop(node_id, None)


class SimBus:
    """One node's peer endpoint in the simulation (implements ``bus.Bus``)."""

    def __init__(self, net: SimNet, node: FrontendNode) -> None:
        self.net = net
        self.node = node
        self.node_id = node.node_id
        self._pending: dict[int, _Pending] = {}
        self._next = 1
        # Whom this node can send to: as PeerBus's addresses, the peers alive in its map, plus any
        # peer that dialed it since (PeerBus learns a dialer's address from its hello).
        self.addresses: set[str] = set()
        self._redialing: set[str] = set()
        net.buses[self.node_id] = self

    def set_addresses(self, alive: set[str]) -> None:
        self.addresses = alive - {self.node_id}

    def heard_from(self, peer: str) -> None:
        self.addresses.add(peer)

    def fail_pending(self, peer: str, reason: str) -> None:
        for req_id, p in list(self._pending.items()):
            if p.peer == peer and self._pending.pop(req_id, None) is not None:
                self._in(functools.partial(p.on_reply, False, O.Refused(O.Refusal.LOST, reason)))

    def _in(self, fn: Callable[[], None]) -> None:
        """Run an input of this node (if its process still lives) with the clock set."""
        if self.net.buses.get(self.node_id) is not self:
            return
        self.node.channels.now_ms = self.net.sched.now
        fn()
        self.net.after_input(self.node_id)

    def _linked(self, peer: str) -> bool:
        return peer in self.addresses

    def request(
        self, peer: str, op: O.PeerOp, on_reply: Callable[[bool, Any], None], timeout_s: float = 5.0
    ) -> None:
        if not self._linked(peer):
            on_reply(False, O.Refused(O.Refusal.UNSENT, f"no link to {peer}"))
            return
        net, now = self.net, self.net.sched.now
        req_id = self._next
        self._next += 1
        deadline = now + int(timeout_s * 1000)
        self._pending[req_id] = _Pending(peer, on_reply, net.link(self.node_id, peer).gen)
        net.sched.at(deadline, lambda: self._timeout(req_id, peer))
        if peer not in net.nodes:
            # Nothing listens there: the connect is refused; the peer is marked down (DESIGN 4.2).
            def refused() -> None:
                self.fail_pending(peer, f"cannot connect to {peer}")
                self._in(lambda: self.node.channels.mark_down(net.sched.now, peer))
                self._redial(peer, 50)

            net.sched.at(now + 1, refused)
            return
        args = _wire(op.to_args())
        name = op.OP
        net.send(
            self.node_id, peer, lambda: net.buses[peer]._serve(self.node_id, req_id, name, args, deadline)
        )

    def _redial(self, peer: str, delay_ms: int) -> None:
        """PeerBus's link task: keep dialing a refused peer (backing off to 1 s) while it is in the
        address map; when a connect succeeds the peer is marked up again."""
        if peer in self._redialing:
            return
        self._redialing.add(peer)

        def attempt(delay: int) -> None:
            if self.net.buses.get(self.node_id) is not self or peer not in self.addresses:
                self._redialing.discard(peer)
                return
            if peer in self.net.nodes:
                self._redialing.discard(peer)
                self._in(lambda: self.node.channels.mark_up(self.net.sched.now, peer))
                return
            nxt = min(delay * 2, 1_000)
            self.net.sched.at(self.net.sched.now + delay, lambda: attempt(nxt))

        self.net.sched.at(self.net.sched.now + delay_ms, lambda: attempt(delay_ms))

    def _timeout(self, req_id: int, peer: str) -> None:
        p = self._pending.pop(req_id, None)
        if p is not None:
            self._in(lambda: p.on_reply(False, O.Refused(O.Refusal.LOST, f"request to {peer} timed out")))

    def _serve(self, src: str, req_id: int, name: str, args: dict[str, Any], deadline: int) -> None:
        net = self.net
        if net.sched.now > deadline + CLOCK_SKEW_MS:
            net.stats["stale_dropped"] += 1
            return  # its caller timed out long ago and has retried: never execute it now
        self.heard_from(src)
        try:
            op = O.decode(name, args)
        except RemoteProtocolError as exc:
            net.stats["bad_ops"] += 1
            self._reply(src, req_id, False, O.Refused(O.Refusal.BAD_REQUEST, str(exc)))
            return
        self._in(
            lambda: self.node.handle_peer_request(
                net.sched.now, src, op, lambda ok, res: self._reply(src, req_id, ok, res)
            )
        )

    def _reply(self, dst: str, req_id: int, ok: bool, result: Any) -> None:
        if isinstance(result, O.Refused):
            result = result.to_wire()
        data = _wire(result)
        net = self.net

        def arrive() -> None:
            bus = net.buses.get(dst)
            if bus is None:
                return
            p = bus._pending.pop(req_id, None)
            if p is None:
                return
            res = data if ok else O.Refused.from_wire(data)
            bus._in(lambda: p.on_reply(ok, res))

        if self.net.buses.get(self.node_id) is self:
            net.send(self.node_id, dst, arrive)

    def push(self, peer: str, op: O.PeerOp) -> bool:
        if not self._linked(peer):
            return False
        net = self.net
        if peer not in net.nodes:
            return True
        args = _wire(op.to_args())
        name = op.OP

        def arrive() -> None:
            bus = net.buses.get(peer)
            if bus is None:
                return
            bus.heard_from(self.node_id)
            try:
                rec = O.decode(name, args)
            except RemoteProtocolError:
                net.stats["bad_ops"] += 1
                return
            bus._in(lambda: bus.node.handle_peer_push(net.sched.now, self.node_id, rec))

        net.send(self.node_id, peer, arrive)
        return True

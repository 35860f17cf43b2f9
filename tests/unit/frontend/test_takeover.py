"""Takeover between two frontend cores when a handover's reply is lost (chaos seed 25705).

Pure: two ``FrontendNode`` s share a hand-driven bus, so the test decides which request is served,
and which reply is lost, in which order. The interleaving it forces is the one the chaos run of
seed 25705 showed at t = 134-136 s: a client resumes at fe-b1 (its owner fe-a1 out of the router's
sight); fe-b1 asks fe-a1 to hand the connection over; fe-a1 does (and leaves a tombstone naming
fe-b1), but the reply is late, so fe-b1's request times out and it adopts the state from its copy.
Meanwhile the client, whose connect attempt timed out, resumes again with its old key, and the
router sends it to the key's owner, fe-a1. Before the fix fe-a1's tombstone answered 80008: a new
connectionId after a sub-second absence, and the client re-sent its un-ACKed publishes on the new
connection, where nothing could deduplicate them (84 duplicated deliveries).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from frontend import peerops as O
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.testing import MemoryOutlet
from kernel.keys import KeySigner
from kernel.placement import ClusterView, Peer
from kernel.protocol import Action, ProtocolMessage

SECRET = "test-secret-test-secret-test-secret"
ZONES = {"fe-a1": "a", "fe-b1": "b"}


class HandBus:
    """Requests and pushes are queued; the test serves them (or loses them) one by one."""

    def __init__(self, nodes: dict[str, FrontendNode], me: str, clock: list[int]) -> None:
        self.nodes, self.me, self.clock = nodes, me, clock
        self.requests: list[tuple[str, O.PeerOp, Callable[[bool, Any], None]]] = []
        self.unanswered: list[Callable[[bool, Any], None]] = []  # served, but the reply was lost

    def request(
        self, peer: str, op: O.PeerOp, on_reply: Callable[[bool, Any], None], timeout_s: float = 5.0
    ) -> None:
        self.requests.append((peer, op, on_reply))

    def push(self, peer: str, op: O.PeerOp) -> bool:
        self.nodes[peer].handle_peer_push(self.clock[0], self.me, op)
        return True

    def take(self, kind: type) -> tuple[str, O.PeerOp, Callable[[bool, Any], None]]:
        for i, (peer, op, on_reply) in enumerate(self.requests):
            if isinstance(op, kind):
                del self.requests[i]
                return peer, op, on_reply
        raise AssertionError(f"{self.me} sent no {kind.__name__}: {self.requests}")

    def serve(self, kind: type, *, lose_reply: bool = False) -> None:
        """Deliver this node's oldest request of ``kind``; its reply (now or later) reaches us unless
        ``lose_reply``."""
        peer, op, on_reply = self.take(kind)
        if lose_reply:
            self.unanswered.append(on_reply)
        self.nodes[peer].handle_peer_request(
            self.clock[0], self.me, op, (lambda ok, res: None) if lose_reply else on_reply
        )

    def time_out(self) -> None:
        """The oldest request whose reply was lost times out at its sender."""
        self.unanswered.pop(0)(False, O.Refused(O.Refusal.LOST, "request timed out"))


def cluster() -> tuple[dict[str, FrontendNode], dict[str, HandBus], list[int]]:
    clock = [1_000]
    signer = KeySigner([SECRET])
    nodes: dict[str, FrontendNode] = {}
    buses: dict[str, HandBus] = {}
    view = ClusterView(
        {n: Peer(node_id=n, role="frontend", zone=z, client_addr=n, peer_addr=n) for n, z in ZONES.items()}
    )
    for name, zone in ZONES.items():
        cfg = FrontendConfig(node_id=name, zone=zone, dev=True, cluster_secret=SECRET)
        node = FrontendNode(cfg, rng=random.Random(name), signer=signer)
        buses[name] = node.channels.bus = HandBus(nodes, name, clock)
        nodes[name] = node
    for node in nodes.values():
        node.channels.ready = True
        node.apply_view(clock[0], view)
    return nodes, buses, clock


def connected(outlet: MemoryOutlet) -> ProtocolMessage:
    return next(m for m in outlet.drain() if m.action is Action.CONNECTED)


def resume_at(node: FrontendNode, key: str, now: int) -> tuple[MemoryOutlet, dict[str, str]]:
    """Start a resume at ``node``: the takeover's first step runs; the connect waits for it."""
    outlet = MemoryOutlet()
    params = {"v": "6", "key": "k.id:secret", "resume": key}
    answered: list[dict[str, str]] = []
    node.takeover.prepare(now, params, answered.append)
    return outlet, answered  # type: ignore[return-value]


def first_connection(nodes: dict[str, FrontendNode]) -> tuple[str, str]:
    """A client connects to fe-a1 and loses its transport: (connectionId, key)."""
    a1 = nodes["fe-a1"]
    outlet = MemoryOutlet()
    s = a1.connect(1_000, {"v": "6", "key": "k.id:secret"}, outlet)
    assert s is not None and s.secondary == "fe-b1"
    msg = connected(outlet)
    a1.transport_lost(1_100, s, outlet)
    return msg.connection_id or "", msg.connection_details["connectionKey"]  # type: ignore[index]


def lost_handover_reply(nodes: dict[str, FrontendNode], buses: dict[str, HandBus], key: str) -> None:
    """fe-b1 takes the connection over; fe-a1 hands it over but the reply is lost, so fe-b1 adopts
    its own copy; the client had already given up on that attempt."""
    b1 = nodes["fe-b1"]
    _, answered = resume_at(b1, key, 1_200)
    _, op, _ = buses["fe-b1"].requests[0]
    assert isinstance(op, O.Handover) and op.key is None
    buses["fe-b1"].serve(O.Handover, lose_reply=True)  # fe-a1 handed it over, tombstone naming fe-b1
    assert nodes["fe-a1"].describe(op.connection_id)["state"] == "handed_over"
    buses["fe-b1"].time_out()  # fe-b1 falls back to its copy
    assert answered and answered[0]["resume"] != key  # fe-b1 adopted it under a new key...
    gone = MemoryOutlet()
    s = b1.connect(3_300, answered[0], gone)  # ...for a transport the client had abandoned
    assert s is not None
    b1.transport_lost(3_300, s, gone)


def test_a_client_back_at_the_old_owner_with_its_old_key_keeps_its_connection() -> None:
    nodes, buses, clock = cluster()
    conn_id, key = first_connection(nodes)
    lost_handover_reply(nodes, buses, key)
    a1 = nodes["fe-a1"]
    clock[0] = 3_400
    outlet, answered = resume_at(a1, key, clock[0])
    assert not answered  # fe-a1 asks fe-b1 for it back instead of answering 80008
    _, op, _ = buses["fe-a1"].requests[0]
    assert isinstance(op, O.Handover) and op.key == key
    buses["fe-a1"].serve(O.Handover)
    assert answered and answered[0]["resume"] != key
    s = a1.connect(clock[0], answered[0], outlet)
    msg = connected(outlet)
    assert s is not None and msg.connection_id == conn_id and msg.error is None
    assert conn_id not in nodes["fe-b1"].sessions  # handed back: one owner


def test_a_reclaim_waits_for_the_takers_takeover_to_finish() -> None:
    nodes, buses, _ = cluster()
    conn_id, key = first_connection(nodes)
    b1, a1 = nodes["fe-b1"], nodes["fe-a1"]
    _, b1_answered = resume_at(b1, key, 1_200)
    buses["fe-b1"].serve(O.Handover, lose_reply=True)
    # The client is back at fe-a1 while fe-b1 is still waiting for the lost reply.
    outlet, answered = resume_at(a1, key, 1_500)
    buses["fe-a1"].serve(O.Handover)
    assert not answered  # fe-b1 holds the request until its own takeover ends
    buses["fe-b1"].time_out()
    assert b1_answered  # fe-b1's takeover ended (the client is no longer there)...
    assert answered and answered[0]["resume"] not in (key, b1_answered[0]["resume"])  # ...then handed back
    s = a1.connect(3_300, answered[0], outlet)
    msg = connected(outlet)
    assert s is not None and msg.connection_id == conn_id and msg.error is None


def test_an_old_key_never_takes_back_a_connection_its_client_uses_with_the_new_key() -> None:
    nodes, buses, _ = cluster()
    conn_id, key = first_connection(nodes)
    b1, a1 = nodes["fe-b1"], nodes["fe-a1"]
    _, answered_b = resume_at(b1, key, 1_200)
    buses["fe-b1"].serve(O.Handover)
    live = MemoryOutlet()
    s = b1.connect(1_300, answered_b[0], live)
    assert s is not None and connected(live).connection_id == conn_id
    b1.handle(1_400, s, ProtocolMessage(action=Action.HEARTBEAT))  # it speaks with the new key
    b1.transport_lost(1_500, s, live)
    outlet, answered = resume_at(a1, key, 1_600)  # a stale attempt with the old key
    if buses["fe-a1"].requests:
        buses["fe-a1"].serve(O.Handover)
    assert answered == [{"v": "6", "key": "k.id:secret", "resume": key}]  # unchanged: in-band 80008
    late = a1.connect(1_700, answered[0], outlet)
    msg = connected(outlet)
    assert msg.connection_id != conn_id and msg.error is not None and msg.error.code == 80008
    assert late is not None and b1.describe(conn_id)["state"] == "detached"


def test_a_key_issued_after_our_handover_is_taken_over_from_our_copy_when_its_owner_dies() -> None:
    # Chaos seed 1956683253 (t 92-97 s): fe-b2 handed both14's connection to fe-a2 (a tombstone
    # naming fe-a2), became the secondary of its new key, and when fe-a2 was killed the client's
    # resume with that key reached fe-b2, whose tombstone answered 80008 instead of taking it over.
    nodes, buses, _ = cluster()
    b1, a1 = nodes["fe-b1"], nodes["fe-a1"]
    first = MemoryOutlet()
    s = b1.connect(1_000, {"v": "6", "key": "k.id:secret"}, first)
    assert s is not None and s.secondary == "fe-a1"
    conn_id = connected(first).connection_id
    b1.transport_lost(1_100, s, first)
    _, answered = resume_at(a1, s.key, 1_200)  # the client resumes at fe-a1: fe-b1 hands it over
    buses["fe-a1"].serve(O.Handover)
    assert answered and b1.describe(conn_id or "")["state"] in ("handed_over", "copy")
    live = MemoryOutlet()
    moved = a1.connect(1_300, answered[0], live)
    assert moved is not None and moved.secondary == "fe-b1"  # its copy lives on fe-b1 again
    new_key = connected(live).connection_details["connectionKey"]  # type: ignore[index]
    a1.handle(1_400, moved, ProtocolMessage(action=Action.HEARTBEAT))
    # fe-a1 is killed; fe-b1 sees it dead, and the client resumes there with fe-a1's key.
    dead = ClusterView(
        {
            n: Peer(node_id=n, role="frontend", zone=z, client_addr=n, peer_addr=n, alive=n == "fe-b1")
            for n, z in ZONES.items()
        }
    )
    b1.apply_view(2_000, dead)
    outlet, answered = resume_at(b1, new_key, 2_100)
    assert answered and answered[0]["resume"] != new_key  # taken over from fe-b1's own copy
    back = b1.connect(2_100, answered[0], outlet)
    msg = connected(outlet)
    assert back is not None and msg.connection_id == conn_id and msg.error is None


def test_a_restarted_owner_asks_back_the_connection_its_secondary_took_for_the_same_key() -> None:
    # frontend.sim seed 45 (--connected-lost 0.25): fe-a1 (owner) restarted; fe-b1 took the
    # connection over from its copy, but the client never saw that CONNECTED and retried with the
    # replaced key, which the router sent to the key's owner: fe-a1, back with nothing but the copy
    # fe-b1 had since written to it at the newer epoch. Before the fix: 80008, a new connectionId.
    nodes, buses, clock = cluster()
    conn_id, key = first_connection(nodes)
    view = nodes["fe-a1"].channels.view
    cfg = nodes["fe-a1"].config
    a1 = FrontendNode(cfg, rng=random.Random("fe-a1 again"), signer=nodes["fe-b1"].signer)  # restarted
    buses["fe-a1"] = a1.channels.bus = HandBus(nodes, "fe-a1", clock)
    nodes["fe-a1"] = a1
    a1.channels.ready = True
    a1.apply_view(clock[0], view)
    b1 = nodes["fe-b1"]
    _, answered_b = resume_at(b1, key, 1_200)
    buses["fe-b1"].serve(O.Handover)  # the restarted owner has nothing to hand over: fe-b1's copy
    assert answered_b and answered_b[0]["resume"] != key
    gone = MemoryOutlet()
    s = b1.connect(1_300, answered_b[0], gone)  # the CONNECTED the client never saw
    assert s is not None and s.secondary == "fe-a1"
    b1.transport_lost(1_300, s, gone)
    assert a1.ownership.copies.get(1_300, conn_id) is not None  # fe-a1 holds a copy at epoch 2
    outlet, answered = resume_at(a1, key, 1_400)
    assert not answered
    buses["fe-a1"].serve(O.SessionFetch)  # fe-b1: no copy, but it holds the connection at epoch 2
    _, op, _ = buses["fe-a1"].requests[0]
    assert isinstance(op, O.Handover) and op.key == key
    buses["fe-a1"].serve(O.Handover)
    assert answered and answered[0]["resume"] != key
    back = a1.connect(1_500, answered[0], outlet)
    msg = connected(outlet)
    assert back is not None and msg.connection_id == conn_id and msg.error is None
    assert conn_id not in b1.sessions  # handed back: one owner


def test_a_taker_whose_client_never_used_its_key_gives_it_back_though_a_transport_is_attached() -> None:
    # Chaos seed 1851702012 (t 13.7-17.8 s, issue 18): zone a partitioned; fh-watch's comet resume
    # with fe-a1's key reached fe-b1, whose Handover request to fe-a1 timed out after 2 s, 5 ms after
    # the client had given up on that attempt. fe-b1 then adopted its copy under a new key and
    # opened a comet transport for the abandoned request (it lingers, attached, until its 25 s
    # 'no recv'). The client's retry went to fe-a1, which still held the connection and served it;
    # when the partition healed fe-b1's fencing discarded fe-a1's live connection, and the client's
    # next resume at fe-a1 asked fe-b1 for it back: refused because a transport was attached, so
    # 80008 and a new connectionId after 0.14 s away. The client never spoke with fe-b1's key and
    # came back with the key fe-b1's takeover replaced: that transport is an orphan.
    nodes, buses, clock = cluster()
    conn_id, key = first_connection(nodes)
    a1, b1 = nodes["fe-a1"], nodes["fe-b1"]
    _, answered_b = resume_at(b1, key, 1_200)
    _, lost, on_reply = buses["fe-b1"].take(O.Handover)  # the partition eats the request
    assert isinstance(lost, O.Handover) and lost.key is None
    # The client gives up and retries; the router sends it to fe-a1, which serves it.
    first = MemoryOutlet()
    _, answered_a = resume_at(a1, key, 3_100)
    assert answered_a == [{"v": "6", "key": "k.id:secret", "resume": key}]
    s = a1.connect(3_100, answered_a[0], first)
    assert s is not None and connected(first).connection_id == conn_id
    a1.handle(3_150, s, ProtocolMessage(action=Action.HEARTBEAT))
    on_reply(False, O.Refused(O.Refusal.LOST, "request to fe-a1 timed out"))  # fe-b1 adopts its copy
    assert answered_b and answered_b[0]["resume"] != key
    orphan = MemoryOutlet()
    taken = b1.connect(3_200, answered_b[0], orphan)  # for the request the client abandoned
    assert taken is not None and taken.secondary == "fe-a1"
    # The partition heals: fe-b1's copy and its fencing reach fe-a1, which drops its connection.
    clock[0] = 5_000
    while buses["fe-b1"].requests:
        peer, op, reply = buses["fe-b1"].requests.pop(0)
        nodes[peer].handle_peer_request(clock[0], "fe-b1", op, reply)
    assert conn_id not in a1.sessions or a1.sessions[conn_id].terminal
    # The client resumes at fe-a1 with the key it holds.
    outlet, answered = resume_at(a1, key, 5_100)
    for _ in range(4):
        if answered or not buses["fe-a1"].requests:
            break
        peer, op, reply = buses["fe-a1"].requests.pop(0)
        nodes[peer].handle_peer_request(clock[0], "fe-a1", op, reply)
    assert answered and answered[0]["resume"] != key  # fe-b1 gave it back
    back = a1.connect(5_200, answered[0], outlet)
    msg = connected(outlet)
    assert back is not None and msg.connection_id == conn_id and msg.error is None
    assert conn_id not in b1.sessions  # handed back: one owner


def test_a_taker_whose_copy_went_newer_while_it_waited_adopts_nothing() -> None:
    # Chaos seed 1850085170 (t 11.5-13.8 s, issue 18): fe-a1 killed and restarted. fe-b1 began a
    # takeover of two of its connections (Handover to fe-a1: nothing; SessionFetch to fe-b2, the
    # copy's holder); the clients meanwhile resumed at the restarted fe-a1, which took both over from
    # fe-b2's copy (epoch 2) and wrote its new copy to fe-b1. fe-b2's answer to fe-b1 came 2 s late,
    # and fe-b1 adopted that epoch-1 state too: two owners at epoch 2. fe-b1's, detached, later left
    # the members its clients had entered: 30 spurious LEAVEs.
    from kernel.placement import Placement

    zones = {"fe-a1": "a", "fe-b1": "b", "fe-b2": "b"}
    clock, signer = [1_000], KeySigner([SECRET])
    full = ClusterView(
        {n: Peer(node_id=n, role="frontend", zone=z, client_addr=n, peer_addr=n) for n, z in zones.items()}
    )
    without_b1 = ClusterView({n: dataclasses.replace(p, alive=n != "fe-b1") for n, p in full.peers.items()})
    nodes: dict[str, FrontendNode] = {}
    buses: dict[str, HandBus] = {}

    def start(name: str, view: ClusterView) -> FrontendNode:
        node = FrontendNode(FrontendConfig(node_id=name, zone=zones[name], dev=True, cluster_secret=SECRET),
                            rng=random.Random(f"{name}{len(nodes)}"), signer=signer)  # fmt: skip
        buses[name] = node.channels.bus = HandBus(nodes, name, clock)
        nodes[name] = node
        node.channels.ready = True
        node.apply_view(clock[0], view)
        return node

    a1 = start("fe-a1", without_b1)  # its connection's copy goes to fe-b2
    b1, b2 = start("fe-b1", full), start("fe-b2", full)
    for _ in range(50):
        outlet = MemoryOutlet()
        s = a1.connect(clock[0], {"v": "6", "key": "k.id:secret"}, outlet)
        assert s is not None and s.secondary == "fe-b2"
        if Placement(full).connection_secondary(s.connection_id, "fe-a1") == "fe-b1":
            break  # once fe-a1 sees fe-b1, the copy of this one goes there
    conn_id, key = s.connection_id, s.key
    a1.transport_lost(clock[0], s, outlet)
    assert b2.ownership.copies.get(clock[0], conn_id) is not None
    a1 = start("fe-a1", full)  # killed and restarted: nothing

    _, b1_answered = resume_at(b1, key, 1_200)  # a resume reaches fe-b1 first
    buses["fe-b1"].serve(O.Handover)  # the restarted owner has nothing to hand over
    peer, fetch, late_reply = buses["fe-b1"].take(O.SessionFetch)
    assert peer == "fe-b2"
    held: list[tuple[bool, Any]] = []
    b2.handle_peer_request(1_250, "fe-b1", fetch, lambda ok, res: held.append((ok, res)))  # answered late

    live = MemoryOutlet()
    _, a1_answered = resume_at(a1, key, 1_300)  # the client's retry, at the key's owner
    buses["fe-a1"].serve(O.SessionFetch)
    assert a1_answered and a1_answered[0]["resume"] != key
    back = a1.connect(1_300, a1_answered[0], live)
    assert back is not None and back.secondary == "fe-b1" and back.epoch == 2
    assert connected(live).connection_id == conn_id
    assert b1.ownership.copies.get(1_300, conn_id) is not None  # fe-a1's new copy, on fe-b1

    clock[0] = 3_300
    late_reply(*held[0])  # fe-b2's answer: its epoch-1 copy
    assert b1_answered == [{"v": "6", "key": "k.id:secret", "resume": key}]  # unchanged: no takeover
    assert conn_id not in b1.sessions, "fe-b1 adopted the connection beside fe-a1"
    assert a1.sessions[conn_id].epoch == 2

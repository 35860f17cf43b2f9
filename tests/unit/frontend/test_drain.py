"""The drain's pure steps (frontend/drain.py), driven by hand: homes offered, then the propagation
wait, clients cut, copies left with fallback, ``finished`` once; the deadline ends a phase that hangs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frontend import peerops as O
from frontend.config import FrontendConfig
from frontend.drain import Drain, Phase
from kernel.errors import ErrorCode, ErrorInfo
from kernel.placement import ClusterView, Peer


@dataclass
class FakeBus:
    pushed: list[tuple[str, O.PeerOp]] = field(default_factory=list)
    requests: list[tuple[str, O.PeerOp, Any]] = field(default_factory=list)

    def push(self, peer: str, op: O.PeerOp) -> bool:
        self.pushed.append((peer, op))
        return True

    def request(self, peer: str, op: O.PeerOp, on_reply: Any, timeout_s: float = 5.0) -> None:
        self.requests.append((peer, op, on_reply))


class FakePlacement:
    def channel_home(self, name: str) -> str | None:
        return {"ch1": "fe-b1", "ch2": "fe-a1"}.get(name, "fe-a2")


class FakeQuorum:
    left = False

    def leave(self) -> None:
        self.left = True


@dataclass
class FakeChannels:
    bus: FakeBus
    view: ClusterView
    homes: dict[str, object] = field(default_factory=dict)
    placement: FakePlacement = field(default_factory=FakePlacement)
    log_copies: list[tuple[str, O.ReplicaSync]] = field(default_factory=list)
    zone_quorum: FakeQuorum = field(default_factory=FakeQuorum)
    replicas: dict[str, object] = field(default_factory=dict)

    def copies_to_leave(self) -> list[tuple[str, O.ReplicaSync]]:
        return list(self.log_copies)


@dataclass
class FakeSession:
    connection_id: str
    secondary: str | None
    terminal: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.connection_id}


class FakeNode:
    node_id = "fe-a1"

    def __init__(self, homes: list[str], sessions: list[FakeSession], live: list[str]) -> None:
        self.config = FrontendConfig(node_id="fe-a1", zone="a", dev=True, drain_timeout_s=30)
        peers = {
            n: Peer(node_id=n, role="frontend", zone=n[3], client_addr=n, peer_addr=n, alive=n != "fe-b2")
            for n in ("fe-a1", "fe-a2", "fe-b1", "fe-b2")
        }
        self.channels = FakeChannels(FakeBus(), ClusterView(peers), dict.fromkeys(homes, object()))
        self.sessions = {s.connection_id: s for s in sessions}
        self.outlets = dict.fromkeys(live, object())
        self.cuts: list[tuple[int, str, int]] = []

    def cut(self, now_ms: int, s: FakeSession, error: ErrorInfo) -> None:
        self.cuts.append((now_ms, s.connection_id, error.code))
        self.outlets.pop(s.connection_id, None)


def test_a_drain_hands_homes_over_cuts_clients_and_leaves_copies() -> None:
    sessions = [FakeSession("c2", "fe-b2"), FakeSession("c1", "fe-b1")]
    sessions.append(FakeSession("old", None, terminal=True))
    node = FakeNode(["ch1", "ch2", "ch3"], sessions, live=["c2", "c1"])
    finished: list[int] = []
    drain = Drain(node, 1_000, propagate_ms=2_000, finished=lambda: finished.append(1))
    # 1. Each home is offered to its next home; ch2's is this node, so it stays until the deadline.
    assert node.channels.bus.pushed == [("fe-b1", O.Take(channel="ch1")), ("fe-a2", O.Take(channel="ch3"))]
    assert drain.phase is Phase.HOMES and drain.next_deadline() == 31_000
    drain.step(5_000)
    assert drain.phase is Phase.HOMES
    node.channels.homes.clear()
    drain.step(6_000)
    # 2. The propagation wait; 3. then the live clients are cut, in order, resumably.
    assert drain.phase is Phase.PROPAGATE and drain.next_deadline() == 8_000 and node.cuts == []
    drain.step(8_000)
    assert node.cuts == [(8_000, "c1", ErrorCode.DISCONNECTED), (8_000, "c2", ErrorCode.DISCONNECTED)]
    assert drain.phase is Phase.CLIENTS
    del node.sessions["c1"]  # taken over by its new owner
    drain.step(8_500)
    assert drain.phase is Phase.CLIENTS  # c2 is still here
    # 4. At the deadline, c2 (not back in time) leaves a copy: its secondary is dead, so another
    #    zone's live frontend first, then this zone's.
    drain.step(31_000)
    assert drain.phase is Phase.COPIES and drain.next_deadline() is None
    ((peer, op, reply),) = node.channels.bus.requests
    assert (peer, op) == ("fe-b1", O.SessionPut(state={"id": "c2"}))
    reply(False, O.Refused(O.Refusal.LOST, "timed out"))
    peer, _, reply = node.channels.bus.requests[-1]
    assert peer == "fe-a2" and finished == []
    reply(True, None)
    assert finished == [1] and drain.phase is Phase.DONE and drain.copies_lost == 0
    drain.step(40_000)
    assert finished == [1]


def test_a_copy_every_candidate_refuses_is_counted_lost_and_the_drain_still_ends() -> None:
    node = FakeNode([], [FakeSession("c1", "fe-b1")], live=[])
    finished: list[int] = []
    drain = Drain(node, 0, propagate_ms=0, finished=lambda: finished.append(1))
    for _ in range(2):
        node.channels.bus.requests[-1][2](False, O.Refused(O.Refusal.UNSENT, "no link"))
    assert [p for p, _, _ in node.channels.bus.requests] == ["fe-b1", "fe-a2"]
    assert finished == [1] and drain.copies_lost == 1


def test_a_node_with_nothing_left_finishes_at_once() -> None:
    node = FakeNode([], [], live=[])
    finished: list[int] = []
    Drain(node, 0, propagate_ms=0, finished=lambda: finished.append(1))
    assert finished == [1] and node.channels.bus.requests == []
    assert node.channels.zone_quorum.left  # it asks the witness to release its zone's place


def test_channel_copies_go_to_their_next_holders_and_the_drain_waits_for_each_answer() -> None:
    node = FakeNode([], [], live=[])
    copy_b = O.ReplicaSync(channel="ch1", log={"epoch": 3})
    copy_a = O.ReplicaSync(channel="ch1", log={"epoch": 4})
    node.channels.log_copies = [("fe-b1", copy_b), ("fe-a2", copy_a)]
    finished: list[int] = []
    Drain(node, 0, propagate_ms=0, finished=lambda: finished.append(1))
    assert [(p, op) for p, op, _ in node.channels.bus.requests] == [("fe-b1", copy_b), ("fe-a2", copy_a)]
    node.channels.bus.requests[0][2](False, O.Refused(O.Refusal.STALE, "a home holds more"))
    assert finished == []  # a refusal is an answer; the other copy is still out
    node.channels.bus.requests[1][2](True, None)
    assert finished == [1]

"""A request a connection's session made is answered after that session was replaced by another
object for the same connectionId (handed over, then taken back): its answer must not reach the new
session's transport (chaos seed 25705 on 829fcba+gossip, t 161-163.5 s).

both10 resumed at fe-a1 and re-attached chaos:0, whose home fe-a1 was still acquiring; meanwhile a
stale connect attempt of the same client reached fe-b2, which took the connection over (fe-a1's
session discarded), and the client's next resume at fe-a1 reclaimed it: a new Session object under
the same connectionId, on a new transport. The first session's attach then completed and sent its
ATTACHED, replay and SYNC on the new transport (the outlet is looked up by connectionId): the
client, already attached there, got 1615..1630 twice (duplicated 31). Pure: two cores on a
hand-driven bus (``test_takeover``), so the test decides when the attach's answer arrives.
"""

from __future__ import annotations

from frontend import peerops as O
from frontend.node import FrontendNode
from frontend.testing import MemoryOutlet
from kernel.protocol import Action, ProtocolMessage
from tests.unit.frontend.test_takeover import HandBus, cluster, connected, resume_at

KEY = {"v": "6", "key": "k.id:secret"}


def settle(nodes: dict[str, FrontendNode], buses: dict[str, HandBus], clock: list[int]) -> None:
    """Serve every queued request, and tick the cores, until nothing is left to do."""
    for _ in range(50):
        pending = [(n, b) for n, b in buses.items() if b.requests]
        if not pending:
            clock[0] += 200
            for node in nodes.values():
                node.tick(clock[0])
            if not any(b.requests for b in buses.values()):
                return
            continue
        for _, bus in pending:
            _, op, _ = bus.requests[0]
            bus.serve(type(op))
    raise AssertionError("the cores never settled")


def test_an_attach_answered_after_its_session_was_replaced_reaches_nobody() -> None:
    nodes, buses, clock = cluster()
    a1, b1 = nodes["fe-a1"], nodes["fe-b1"]
    name = next(f"ch{i}" for i in range(100) if a1.channels.home_of(f"ch{i}") == "fe-b1")
    homed: list[object] = []
    b1.channels.attach(900, name, None, homed.append)  # fe-b1 becomes the channel's home first
    settle(nodes, buses, clock)
    assert homed and name in b1.channels.homes
    first = MemoryOutlet()
    s = a1.connect(1_000, KEY, first)
    assert s is not None
    conn_id = connected(first).connection_id
    a1.handle(1_010, s, ProtocolMessage(action=Action.ATTACH, channel=name))  # waits on fe-b1
    assert any(isinstance(op, O.Attach) for _, op, _ in buses["fe-a1"].requests)
    a1.transport_lost(1_100, s, first)
    # A stale attempt of the client reaches fe-b1, which takes the connection over...
    _, answered = resume_at(b1, s.key, 1_200)
    buses["fe-b1"].serve(O.Handover)
    away = MemoryOutlet()
    moved = b1.connect(1_300, answered[0], away)
    assert moved is not None
    new_key = connected(away).connection_details["connectionKey"]  # type: ignore[index]
    b1.transport_lost(1_400, moved, away)
    # ...and its next resume, at fe-a1, takes it back: a new session object, a new transport.
    live = MemoryOutlet()
    _, answered = resume_at(a1, new_key, 1_500)
    buses["fe-a1"].serve(O.Handover)
    back = a1.connect(1_600, answered[0], live)
    assert back is not None and back is not s and connected(live).connection_id == conn_id
    live.drain()
    buses["fe-a1"].serve(O.Attach)  # the first session's attach is answered only now
    assert [m for m in live.drain() if m.channel == name] == []  # nothing for an attach never sent here
    assert name not in back.channels

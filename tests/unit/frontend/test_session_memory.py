"""A detached session's memory: parked cursors, the node's own account against tracemalloc.

Pure: the node is driven with explicit times (large ones, as in production, so timestamps are
real int objects and not CPython's cached small ints).
"""

import gc
import tracemalloc

from frontend.session import Session, SessionState
from kernel.protocol import Flag

from .test_node import Client, make_node

T0 = 1_780_000_000_000  # a millisecond wall clock


def _detached_with_channels(node, n_sessions: int, n_channels: int, t: int) -> list[Session]:
    sessions = []
    for k in range(n_sessions):
        c = Client(node, t + k)
        for ch in range(n_channels):
            c.attach(t + k, "".join(("room:", str(ch))))  # a fresh string per attach, as decoded
        c.recv()
        c.drop(t + k + 1)
        sessions.append(c.session)
    return sessions


def test_detached_session_with_10_channels_holds_at_most_1_kib_and_the_account_is_true():
    node = make_node()
    pub = Client(node, T0)
    for i in range(50):
        pub.publish(T0, f"room:{i % 10}", i)
    _detached_with_channels(node, 20, 10, T0 + 1)  # warm: dicts and caches at their working size
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sessions = _detached_with_channels(node, 400, 10, T0 + 10_000)
        gc.collect()
        measured = (tracemalloc.get_traced_memory()[0] - before) / len(sessions)
    finally:
        tracemalloc.stop()
    assert all(s.state is SessionState.DETACHED and s._cursors is None for s in sessions)
    node.refresh_gauges()
    detached = len(sessions) + 20
    account = node.metrics.detached_state_bytes._value.get() / detached
    assert measured <= 1024, measured
    assert account <= 1024, account
    # The account is the truth within 15% (the outlets dict keeps the slots of live transports,
    # which tracemalloc sees and the account does not).
    assert abs(account - measured) <= 0.15 * measured, (account, measured)


def test_parked_cursors_come_back_whole_and_the_copy_reads_them_without_unpacking():
    node = make_node()
    sub, pub = Client(node, T0), Client(node, T0)
    sub.attach(T0, "a")
    sub.attach(T0, "b", flags=int(Flag.SUBSCRIBE))  # modes asked for: subscribe only
    pub.publish(T0 + 1, "a", 1)
    sub.recv()
    before = {n: (c.modes, c.serial, c.requested) for n, c in sub.session.channels.items()}
    sub.drop(T0 + 2)
    s = sub.session
    assert s._cursors is None  # parked
    wire = s.to_wire()["channels"]
    assert s._cursors is None  # the copy did not unpack it
    assert {n: tuple(v) for n, v in wire.items()} == before
    restored = Session.from_wire(s.to_wire(), key="k", epoch=2, secondary=None, now_ms=T0 + 3)
    assert restored._cursors is None
    assert {n: (c.modes, c.serial, c.requested) for n, c in restored.channels.items()} == before
    # Unpacked on first use, and the resume replays from the parked serial.
    pub.publish(T0 + 4, "a", 2)
    r = sub.resume(T0 + 5)
    r.recv()
    r.attach(T0 + 6, "a", before["a"][1])
    att, msg = r.recv()
    assert att.has(Flag.RESUMED)
    assert [m["data"] for m in msg.messages] == [2]
    assert {n: (c.modes, c.requested) for n, c in s.channels.items()} == {
        n: (m, q) for n, (m, _, q) in before.items()
    }

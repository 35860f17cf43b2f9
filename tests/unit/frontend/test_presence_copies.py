"""An enter is written to the connection's copy before the channel's home numbers it.

A frontend holding a connection's copy leaves its members when the owner dies; a member the copy
does not list is never left. So the copy must list a member before anyone can see it: the owner
writes the copy (with the member pending) and waits for the secondary to hold it, then publishes.
Pure: ``now`` in milliseconds, a bus whose copy writes the test answers.
"""

from frontend.peerops import SessionPut
from kernel.protocol import Action
from tests.unit.frontend.test_presence import ENTER, LEAVE, Client, events, make_node


class HeldCopies:
    """A bus whose copy writes wait for the test to answer them; any other request succeeds."""

    def __init__(self):
        self.writes = []  # (peer, state, on_reply): the copy writes waited for
        self.pushed = []  # (peer, state): the copy writes sent without waiting


    def request(self, peer, op, on_reply, timeout_s=2.0):
        if isinstance(op, SessionPut):
            self.writes.append((peer, op.state, on_reply))
        else:
            on_reply(True, None)

    def push(self, peer, op):
        if isinstance(op, SessionPut):
            self.pushed.append((peer, op.state))
        return True


def _member_with_a_secondary():
    node = make_node()
    bus = node.channels.bus = HeldCopies()
    observer = Client(node, clientId="bob")
    observer.attach(0, "room")
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.session.secondary = "fe-b1"  # a frontend of the other zone holds alice's copy
    observer.recv()
    a.recv()
    return node, bus, observer, a


def test_an_enter_is_numbered_only_once_the_secondary_holds_a_copy_listing_the_member():
    _, bus, observer, a = _member_with_a_secondary()
    a.presence(1, "room", ENTER, data="d")
    [(peer, state, answer)] = bus.writes
    assert peer == "fe-b1"
    assert state["presence"]["channels"]["room"]["alice"]["data"] == "d"
    assert events(observer.recv()) == [] and not [f for f in a.recv() if f.action is Action.ACK]
    answer(True, None)
    assert events(observer.recv()) == [(ENTER, "alice")]
    assert [f.msg_serial for f in a.recv() if f.action is Action.ACK] == [0]
    # Committed: the copy is written again, the member held rather than pending.
    assert a.session.presence.channels["room"]["alice"]["data"] == "d" and not a.session.presence.pending
    assert len(bus.writes) == 1 and "alice" in bus.pushed[-1][1]["presence"]["channels"]["room"]


def test_a_secondary_that_does_not_answer_delays_the_enter_never_refuses_it():
    _, bus, observer, a = _member_with_a_secondary()
    a.presence(1, "room", ENTER)
    bus.writes[0][2](False, "request to fe-b1 timed out")
    assert events(observer.recv()) == [(ENTER, "alice")]


def test_a_message_sent_after_an_enter_keeps_its_place_behind_it():
    node, bus, observer, a = _member_with_a_secondary()
    a.presence(1, "room", ENTER)
    a.send(2, action=Action.MESSAGE, channel="room", msg_serial=a.msg_serial, messages=[{"name": "hi"}])
    for t in range(2, 500, 50):  # the message waits for the enter (publisher order, issue 11)
        node.tick(t)
    assert [f.action for f in observer.recv()] == []
    bus.writes[0][2](True, None)
    for t in range(500, 1000, 50):
        node.tick(t)
    assert [f.action for f in observer.recv()] == [Action.PRESENCE, Action.MESSAGE]
    assert [f.msg_serial for f in a.recv() if f.action is Action.ACK] == [0, 1]


def test_an_update_or_leave_of_a_held_member_does_not_wait_for_a_copy_write():
    _, bus, observer, a = _member_with_a_secondary()
    a.presence(1, "room", ENTER)
    bus.writes[0][2](True, None)
    observer.recv()
    a.presence(2, "room", 4, data="new")  # UPDATE
    a.presence(3, "room", LEAVE)
    assert events(observer.recv()) == [(4, "alice"), (LEAVE, "alice")]
    assert len(bus.writes) == 1 and not a.session.presence and bus.pushed[-1][1]["presence"] is None


def test_a_refused_enter_is_no_longer_listed_by_the_copy():
    node, bus, _, a = _member_with_a_secondary()
    node.channels.publish = lambda now, pub, done: done(None, None)  # the home refused it
    a.presence(1, "room", ENTER)
    bus.writes[0][2](True, None)
    assert not a.session.presence.pending and not a.session.presence.channels
    assert bus.pushed[-1][1]["presence"] is None  # rewritten: nothing to leave on its behalf

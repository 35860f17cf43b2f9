"""Copies and presence: an enter reaches the copy before its home; a cut-off copy holder leaves nothing.

A frontend holding a connection's copy leaves its members when the owner dies; a member the copy
does not list is never left. So the copy must list a member before anyone can see it: the owner
writes the copy (with the member pending) and waits for the secondary to hold it, then publishes.
And a copy holder that may be the one cut off (from the owner alone, or from everyone) leaves
nothing. Pure: ``now`` in milliseconds, a bus whose answers the test gives.
"""

from frontend.peerops import SessionPut
from kernel.protocol import Action
from tests.unit.frontend.test_presence import (
    COPY_TTL,
    ENTER,
    LEAVE,
    LINGER,
    TTL,
    AnsweringBus,
    Client,
    _copy_of_a_member,
    _with_owner,
    events,
    make_node,
)


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


def test_a_copy_holder_cut_off_from_a_live_owner_never_leaves_its_members():
    # The owner is out of our sight only: a peer that still sees it alive says so, and nothing is
    # left, however long; once that peer sees it dead too, the members leave.
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, _, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    bus = node.channels.bus = AnsweringBus({"fe-new": {"owned": False, "owner_alive": True}})
    published = _recording_publishes(node)
    _with_owner(node, 5_000, alive=False)
    for t in range(5_000, 3 * COPY_TTL, 1000):
        node.tick(t)
    assert events(observer.recv()) == [] and bus.asked and published == []
    bus.answers["fe-new"] = {"owned": False, "owner_alive": False}
    for t in range(3 * COPY_TTL, 3 * COPY_TTL + 5_000, 1000):
        node.tick(t)
    assert published and set(published) == {(LEAVE, "alice")}  # the leave (and its retries, if refused)


def _recording_publishes(node):
    """Record the presence events ``node`` hands to its channels' homes, then publish them."""
    published = []
    publish = node.channels.publish

    def recording(now, pub, done, **kw):
        published.extend((int(m["action"]), m["clientId"]) for m in pub.messages)
        publish(now, pub, done, **kw)

    node.channels.publish = recording
    return published


def test_a_copy_holder_that_sees_no_other_frontend_alive_never_leaves_even_past_the_copys_life():
    # Cut off from everyone (the others are in its map, all out of sight): its leave could only be
    # numbered once the partition heals, with the owner's client maybe still connected to it.
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, _, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    bus = node.channels.bus = AnsweringBus({})
    published = _recording_publishes(node)
    _with_owner(node, 5_000, alive=False, cut_off=True)
    for t in range(5_000, 4 * COPY_TTL, 1000):
        node.tick(t)
    assert events(observer.recv()) == [] and not bus.asked and published == []


def test_the_owner_enters_again_a_live_member_that_a_stale_server_leave_removed():
    # A copy holder cut off from us confirmed a leave with its side of a partition; numbered at
    # the heal, it reaches us with alice's client connected here: she is entered again, later.
    node = make_node()
    observer = Client(node, clientId="bob")
    observer.attach(0, "room")
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.presence(1, "room", ENTER, data="d")
    observer.recv()
    held = a.session.presence.channels["room"]["alice"]
    stale = {**held, "action": LEAVE, "id": f"!{a.id}:500:1", "timestamp": 500}
    node.channels.publish(600, _server_publish(a.id, stale), lambda serials, err: None)
    out = observer.recv()
    assert events(out) == [(LEAVE, "alice"), (ENTER, "alice")]
    enter = [p for f in out for p in f.presence or ()][-1]
    assert enter["timestamp"] > stale["timestamp"] and enter["data"] == "d"
    assert node.channels.homes["room"].log.presence.get(a.id, "alice") is not None
    # Not for a connection whose client is away: it may live on elsewhere, unheard.
    node.transport_lost(700, a.session, a.outlet)
    node.channels.publish(800, _server_publish(a.id, {**stale, "id": f"!{a.id}:800:2", "timestamp": 800}),
                          lambda serials, err: None)  # fmt: skip
    assert events(observer.recv()) == [(LEAVE, "alice")]


def _server_publish(conn, event):
    from frontend.peerops import Publish

    envelope = {"action": int(Action.PRESENCE), "channel": "room", "id": f"{conn}:-1", "connectionId": conn}
    return Publish(channel="room", connection_id=conn, msg_serial=-int(event["timestamp"]), messages=[event],
                   envelope={**envelope, "timestamp": event["timestamp"]})  # fmt: skip


def _owner_with_its_copy_holder(secondary_alive):
    """alice entered on ``node`` (zone a), her copy on fe-sec (zone b); fe-a2 (zone a) in sight."""
    from kernel.placement import ClusterView, Peer

    node = make_node()
    observer = Client(node, clientId="bob")
    observer.attach(0, "room")
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.presence(1, "room", ENTER)
    observer.recv()
    a.session.secondary = "fe-sec"

    def view(now, sec_alive):  # the others not active: the channel stays homed on the tested node
        peers = [
            Peer(node_id=node.node_id, role="frontend", zone="a"),
            Peer(node_id="fe-a2", role="frontend", zone="a", active=False),
            Peer(node_id="fe-sec", role="frontend", zone="b", active=False, alive=sec_alive),
        ]
        node.channels.set_view(now, ClusterView({p.node_id: p for p in peers}))

    view(2, secondary_alive)
    return node, observer, a, view


def test_an_owner_whose_copy_holder_is_out_of_sight_leaves_nothing_it_may_have_been_taken_over():
    # Chaos seed 475497038 (issue 13): zone a cut off from zone b; both18's client came back through
    # zone b, where fe-b2, its secondary, took the connection over from its copy. fe-a1's linger
    # asked fe-a2 alone ("not mine") and left both18: numbered at the heal, every observer saw a
    # leave and an enter of a member whose client was connected.
    node, observer, a, view = _owner_with_its_copy_holder(secondary_alive=False)
    bus = node.channels.bus = AnsweringBus({"fe-a2": {"owned": False}, "fe-sec": {"owned": True}})
    published = _recording_publishes(node)
    node.transport_lost(3, a.session, a.outlet)
    for t in range(3, 3 + TTL - 1000, 1000):  # the partition lasts: nothing is left
        node.tick(t)
    assert published == [] and events(observer.recv()) == [] and "fe-sec" not in bus.asked
    view(TTL - 1000, True)  # the heal: fe-sec took it over, and says so
    for t in range(TTL - 1000, TTL - 1000 + 3_000, 500):
        node.tick(t)
    assert published == [] and events(observer.recv()) == [] and a.id not in node.sessions


def test_an_owner_whose_copy_holder_answers_leaves_after_the_linger():
    node, _, a, _ = _owner_with_its_copy_holder(secondary_alive=True)
    node.channels.bus = AnsweringBus({"fe-a2": {"owned": False}, "fe-sec": {"owned": False}})
    published = _recording_publishes(node)
    node.transport_lost(3, a.session, a.outlet)
    for t in range(3, 3 + LINGER + 2_000, 500):
        node.tick(t)
    assert published == [(LEAVE, "alice")]


def test_a_stale_copy_of_a_connection_held_here_is_neither_kept_nor_served():
    # Chaos seed 475497038: at the heal, the cut-off old owner fe-a1 wrote both18's old state (epoch
    # 3) to fe-b2, its secondary, which had taken the connection over (epoch 4). A late resume with
    # the old key at fe-a1 fetched that copy from fe-b2 and took the connection over a second time,
    # beside fe-b2, re-entering both18: every observer saw it enter twice.
    from frontend.peerops import SessionFetch

    node = make_node()
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.presence(1, "room", ENTER)
    stale = {**a.session.to_wire(), "epoch": a.session.epoch - 1}
    replies = []
    node.handle_peer_request(2, "fe-old", SessionPut(state=stale), lambda ok, res: replies.append(ok))
    node.handle_peer_push(2, "fe-old", SessionPut(state=stale))
    assert replies == [False] and node.ownership.copies.get(3, a.id) is None
    node.ownership.copies.put(3, stale)  # and one held anyway is not served
    fetched = []
    fetch = SessionFetch(connection_id=a.id)
    node.handle_peer_request(4, "fe-old", fetch, lambda ok, res: fetched.append(res))
    assert fetched == [{"state": None, "held": a.session.epoch}]  # the taker asks for it back instead


def _takeover_from_a_copy_saying_left(left_for_real):
    """alice entered on ``node`` under a key naming fe-owner (zone b) as her owner; the copy
    fe-owner wrote here says it left her (``gone``); fe-owner dies and her client resumes here:
    the takeover adopts the copy. ``left_for_real``: whether the channel's set agrees (a server
    leave of alice was numbered) or holds her present (fe-owner entered her again after that
    write). Returns the node, the observer, alice's connection id and the events handed to the home."""
    from frontend.testing import MemoryOutlet
    from kernel.keys import ConnectionKey

    node = make_node()
    _with_owner(node, 0, alive=True)
    observer = Client(node, clientId="bob")
    observer.attach(0, "room")
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.presence(1, "room", ENTER, data="d")
    conn = a.id
    held = dict(a.session.presence.channels["room"]["alice"])
    key = node.signer.sign(ConnectionKey(owner="fe-owner", secondary=None, connection_id=conn, epoch=3))
    late = {**a.session.to_wire(), "epoch": 3}
    late["presence"] = {**late["presence"], "gone": True}
    node.drop_session(a.session)  # owned by fe-owner: no presence event here
    leave = {**held, "action": LEAVE, "id": f"!{conn}:500:1", "timestamp": 500}  # fe-owner's linger
    node.channels.publish(500, _server_publish(conn, leave), lambda serials, err: None)
    if not left_for_real:  # the client resumed on fe-owner, which entered her again
        enter = {**held, "action": ENTER, "id": f"!{conn}:700:2", "timestamp": 700}
        node.channels.publish(700, _server_publish(conn, enter), lambda serials, err: None)
    observer.recv()
    node.handle_peer_push(800, "fe-owner", SessionPut(state=late))  # written before the enter, late
    published = _recording_publishes(node)
    _with_owner(node, 5_000, alive=False)  # fe-owner killed: its client resumes here
    node.channels.bus = AnsweringBus({})
    answered = []
    node.takeover.prepare(5_000, {"v": "6", "resume": key}, answered.append)
    node.channels.bus = None  # the takeover's peers were asked: the home numbers with no replica
    [params] = answered
    assert params["resume"] != key  # taken over from the copy held here
    s = node.connect(5_000, params, MemoryOutlet("json"))
    assert s is not None and s.connection_id == conn
    for t in range(5_000, 5_000 + LINGER, 500):  # (the home numbers alone once its replica is given up)
        node.tick(t)
    return node, observer, conn, published


def test_a_late_copy_saying_left_does_not_reenter_a_member_its_owner_entered_again():
    # Chaos seed 1688680051 (issue 13, t 98-112 s): fe-b1's linger left sub7 (98.8 s); the client
    # resumed there and fe-b1 re-entered it (100.9 s, numbered at 103.3 s once chaos:1 had a home).
    # Meanwhile fe-a1, its secondary, dropped out of fe-b1's map (zone a cut off), and fe-b1 wrote
    # sub7's copy (still "left", the re-entry unnumbered) to fe-a2; that write reached fe-a2 only
    # at the heal (109.0 s), after fe-b1 had its copy on fe-a1 again. fe-b1 killed at 112.0 s: the
    # router sent sub7 to fe-a2, whose takeover adopted that copy and re-entered sub7: 15
    # observers saw an ENTER of a member present since 103.3 s.
    node, observer, conn, published = _takeover_from_a_copy_saying_left(left_for_real=False)
    assert published == [] and events(observer.recv()) == []
    assert node.channels.homes["room"].log.presence.get(conn, "alice") is not None
    s = node.sessions[conn]
    assert not s.presence.gone and s.presence.channels["room"]["alice"]
    # fe-owner's own leave fanned out here late (a stream's catch-up) is older than the entry that
    # holds her: not answered. A newer server leave (a copy holder cut off) is, with an enter.
    stale = {**_leave_of_alice(conn), "id": f"!{conn}:500:1", "timestamp": 500}
    node.presence.copy_watches.entry_seen(5_000 + LINGER, "room", [stale])
    assert published == [] and events(observer.recv()) == []
    later = {**_leave_of_alice(conn), "id": f"!{conn}:30000:3", "timestamp": 30_000}
    node.channels.publish(30_000, _server_publish(conn, later), lambda serials, err: None)
    assert events(observer.recv()) == [(LEAVE, "alice"), (ENTER, "alice")] == published  # it, its answer


def _leave_of_alice(conn):
    return {"clientId": "alice", "connectionId": conn, "action": LEAVE, "data": "d"}


def test_a_copy_saying_left_whose_members_were_left_reenters_them_on_a_takeover():
    node, observer, conn, published = _takeover_from_a_copy_saying_left(left_for_real=True)
    assert published == [(ENTER, "alice")] and events(observer.recv()) == [(ENTER, "alice")]
    assert node.channels.homes["room"].log.presence.get(conn, "alice") is not None
    assert not node.sessions[conn].presence.gone

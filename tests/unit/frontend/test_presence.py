"""Presence on one node, in virtual time: events in the log, SYNC on attach, linger, CLOSE, re-entry.

Pure: every call takes ``now`` in milliseconds; a 15 s linger takes no time.
"""

import random

from frontend.channel_log import ChannelLog
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.peerops import PresenceOwned, SessionPut
from frontend.presence_set import PresenceAction, PresenceSet, newer, synthesized
from frontend.testing import MemoryOutlet
from kernel.errors import ErrorCode
from kernel.protocol import Action, Flag, ProtocolMessage

TTL = 60_000
LINGER = 15_000
ENTER, LEAVE, UPDATE, PRESENT = (
    int(a)
    for a in (PresenceAction.ENTER, PresenceAction.LEAVE, PresenceAction.UPDATE, PresenceAction.PRESENT)
)


def make_node(**over) -> FrontendNode:
    over.setdefault("presence_linger_ms", LINGER)
    cfg = FrontendConfig(dev=True, connection_state_ttl_ms=TTL, max_idle_interval_ms=1000, **over)
    return FrontendNode(cfg, rng=random.Random(3))


class Client:
    def __init__(self, node: FrontendNode, now: int = 0, **params):
        self.node = node
        self.outlet = MemoryOutlet("json")
        self.session = node.connect(now, {"v": "6", **params}, self.outlet)
        self.msg_serial = 0
        self.outlet.drain()

    @property
    def id(self):
        return self.session.connection_id

    def recv(self):
        return self.outlet.drain()

    def send(self, now, **fields):
        self.node.handle(now, self.session, ProtocolMessage(**fields))

    def attach(self, now, channel, serial=None, flags=0):
        self.send(now, action=Action.ATTACH, channel=channel, channel_serial=serial, flags=flags)

    def presence(self, now, channel, action, client_id=None, data=None):
        m = {"action": action, "data": data}
        if client_id is not None:
            m["clientId"] = client_id
        self.send(now, action=Action.PRESENCE, channel=channel, msg_serial=self.msg_serial, presence=[m])
        self.msg_serial += 1

    def resume(self, now):
        return Client(self.node, now, resume=self.session.key)


def events(frames, action=Action.PRESENCE):
    return [(p["action"], p["clientId"]) for f in frames if f.action is action for p in f.presence or ()]


def test_enter_is_acked_stamped_and_seen_with_a_sync_by_a_later_attacher():
    node = make_node()
    a = Client(node, clientId="alice")
    a.attach(1, "room")
    a.recv()
    a.presence(2, "room", ENTER, data="hi")
    out = a.recv()
    [pres] = [f for f in out if f.action is Action.PRESENCE]
    [ev] = pres.presence
    assert ev["id"] == f"{a.id}:0:0" and ev["connectionId"] == a.id and ev["clientId"] == "alice"
    assert ev["timestamp"] == 2 and ev["data"] == "hi" and pres.channel_serial
    assert [f.action for f in out][-1] is Action.ACK

    b = Client(node, clientId="bob")
    b.attach(3, "room")
    attached, sync = b.recv()
    assert attached.action is Action.ATTACHED and attached.has(Flag.HAS_PRESENCE)
    assert sync.action is Action.SYNC and sync.channel_serial.endswith(":")  # one page: empty cursor
    assert [(p["action"], p["clientId"], p["data"]) for p in sync.presence] == [(PRESENT, "alice", "hi")]


def test_update_and_leave_reach_subscribers_in_order_and_empty_set_has_no_sync():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    a.presence(3, "room", UPDATE, data="away")
    a.presence(4, "room", LEAVE)
    assert events(b.recv()) == [(ENTER, "alice"), (UPDATE, "alice"), (LEAVE, "alice")]
    c = Client(node)
    c.attach(5, "room")
    [attached] = c.recv()
    assert not attached.has(Flag.HAS_PRESENCE)


def test_enter_client_on_wildcard_or_anonymous_key_and_refusals():
    node = make_node()
    anon = Client(node)  # basic auth, no clientId: may name any clientId (enterClient)
    anon.attach(1, "room")
    anon.recv()
    anon.presence(2, "room", ENTER, client_id="carol")
    anon.presence(3, "room", ENTER)  # no clientId at all
    out = anon.recv()
    assert events(out) == [(ENTER, "carol")]
    [nack] = [f for f in out if f.action is Action.NACK]
    assert nack.error.code == ErrorCode.INVALID_CLIENT_ID

    bob = Client(node, clientId="bob")
    bob.attach(4, "room", flags=int(Flag.SUBSCRIBE | Flag.PUBLISH))  # no PRESENCE mode
    bob.recv()
    bob.presence(5, "room", ENTER)
    bob.presence(6, "other", ENTER, client_id="mallory")
    bob.presence(7, "other", 9)
    nacks = [f.error.code for f in bob.recv() if f.action is Action.NACK]
    assert nacks == [ErrorCode.CAPABILITY_DENIED, ErrorCode.INVALID_CLIENT_ID, ErrorCode.BAD_REQUEST]


def test_presence_subscribe_mode_gates_delivery_and_subscribe_mode_gates_messages():
    node = make_node()
    a = Client(node, clientId="alice")
    a.attach(1, "room")
    watcher = Client(node)
    watcher.attach(1, "room", flags=int(Flag.PRESENCE_SUBSCRIBE))
    deaf = Client(node)
    deaf.attach(1, "room", flags=int(Flag.SUBSCRIBE))
    for c in (a, watcher, deaf):
        c.recv()
    a.presence(2, "room", ENTER)
    a.send(3, action=Action.MESSAGE, channel="room", msg_serial=a.msg_serial, messages=[{"data": 1}])
    assert [f.action for f in watcher.recv()] == [Action.PRESENCE]
    assert [f.action for f in deaf.recv()] == [Action.MESSAGE]


def test_large_set_is_paged_with_sync_cursors():
    node = make_node(presence_sync_page=1000)
    anon = Client(node)
    anon.attach(1, "big")
    for i in range(2500):
        anon.presence(2, "big", ENTER, client_id=f"m{i}")
    anon.recv()
    b = Client(node)
    b.attach(3, "big")
    attached, *syncs = b.recv()
    assert attached.has(Flag.HAS_PRESENCE)
    cursors = [s.channel_serial.partition(":")[2] for s in syncs]
    assert len(syncs) == 3 and cursors[-1] == "" and all(cursors[:-1])
    assert len({s.channel_serial.partition(":")[0] for s in syncs}) == 1
    assert sum(len(s.presence) for s in syncs) == 2500


def test_resume_within_linger_is_invisible_and_replays_missed_presence():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    b.recv()
    a.node.transport_lost(10, a.session, a.outlet)
    b.presence(11, "room", ENTER)  # while alice is away
    node.tick(10 + LINGER - 1)
    assert events(b.recv()) == [(ENTER, "bob")]
    a2 = a.resume(10 + LINGER - 1)
    node.tick(10 + 3 * LINGER)
    assert events(b.recv()) == []
    a2.attach(10 + LINGER, "room", serial=a.session.channels["room"].serial)
    out = a2.recv()
    assert out[0].has(Flag.RESUMED) and events(out) == [(ENTER, "bob")]  # the missed enter, replayed
    assert sorted(p["clientId"] for p in events_sync(out)) == ["alice", "bob"]


def events_sync(frames):
    return [p for f in frames if f.action is Action.SYNC for p in f.presence]


def test_abrupt_drop_leaves_once_after_the_linger_and_a_late_resume_reenters():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER, data="d")
    b.recv()
    node.transport_lost(100, a.session, a.outlet)
    node.tick(100 + LINGER - 1)
    assert events(b.recv()) == []
    node.tick(100 + LINGER)
    node.tick(100 + 2 * LINGER)
    [leave] = [p for f in b.recv() if f.action is Action.PRESENCE for p in f.presence]
    assert leave["action"] == LEAVE and leave["clientId"] == "alice" and leave["data"] == "d"
    assert synthesized(leave) and leave["connectionId"] == a.id
    a.resume(100 + 3 * LINGER)  # within the TTL: the server re-enters alice
    assert events(b.recv()) == [(ENTER, "alice")]
    node.tick(100 + 5 * LINGER)
    assert events(b.recv()) == []


def test_close_leaves_at_once_and_detach_leaves_that_channel():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.attach(1, "hall")
        c.recv()
    a.presence(2, "room", ENTER)
    a.presence(2, "hall", ENTER)
    b.recv()
    a.send(3, action=Action.DETACH, channel="hall")
    assert [(f.channel, *e) for f in b.recv() for e in events([f])] == [("hall", LEAVE, "alice")]
    a.send(4, action=Action.CLOSE)
    assert [(f.channel, *e) for f in b.recv() for e in events([f])] == [("room", LEAVE, "alice")]
    node.tick(4 + 2 * LINGER)
    assert events(b.recv()) == []


def test_expiry_leaves_when_linger_is_longer_than_the_ttl():
    node = make_node(presence_linger_ms=10 * TTL)
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    b.recv()
    node.transport_lost(5, a.session, a.outlet)
    node.tick(5 + TTL)
    assert events(b.recv()) == [(LEAVE, "alice")]


def test_newness_follows_rtp2():
    base = {"connectionId": "c1", "clientId": "x", "timestamp": 5}
    assert newer({**base, "id": "c1:3:0"}, {**base, "id": "c1:2:7"})
    assert newer({**base, "id": "c1:3:1"}, {**base, "id": "c1:3:0"})
    assert not newer({**base, "id": "c1:3:0"}, {**base, "id": "c1:3:0"})
    synth = {**base, "id": "!c1:9:1", "timestamp": 6}
    assert synthesized(synth) and newer(synth, {**base, "id": "c1:9:9"})
    assert not newer({**synth, "timestamp": 4}, {**base, "id": "c1:1:1"})
    s = PresenceSet()
    assert s.apply({**base, "id": "c1:3:0", "action": ENTER})
    assert not s.apply({**base, "id": "c1:2:0", "action": LEAVE})  # older: ignored, as the SDK does
    assert s.apply({**base, "id": "c1:4:0", "action": LEAVE}) and len(s) == 0
    assert not s.apply({**base, "id": "c1:5:0", "action": LEAVE})


def test_set_travels_in_the_log_snapshot_beyond_retention():
    lg = ChannelLog("ch", "ep", max_messages=2, retention_ms=1000)
    for i in range(5):
        ev = {"action": ENTER, "id": f"c:{i}:0", "connectionId": "c", "clientId": f"u{i}", "timestamp": i}
        lg.append(i, [ev], {"action": int(Action.PRESENCE), "channel": "ch"}, publisher="c", msg_serial=i)
        lg.advance_presence()
    lg.expire(10_000)
    assert len(lg) == 0 and len(lg.presence) == 5
    copy = ChannelLog.from_snapshot("ch", lg.snapshot(), now_ms=10_000, max_messages=2, retention_ms=1000)
    assert sorted(m["clientId"] for m in copy.presence) == [f"u{i}" for i in range(5)]
    assert copy.last_seq == 5


def _copy_of_a_member(node: FrontendNode, now: int) -> tuple[dict, str, Client]:
    """alice enters on ``node``, then her session leaves it silently (as if owned elsewhere);
    returns the copy of her state, her connection id, and an observer on the channel."""
    observer = Client(node, clientId="bob")
    observer.attach(now, "room")
    a = Client(node, clientId="alice")
    a.attach(now, "room")
    a.presence(now, "room", ENTER, data="d")
    state = a.session.to_wire()
    node.drop_session(a.session)  # no presence event: a handover looks the same
    observer.recv()
    return state, a.id, observer


def _with_owner(node: FrontendNode, now: int, alive: bool, *, cut_off: bool = False) -> None:
    from kernel.placement import ClusterView, Peer

    me = Peer(node_id=node.node_id, role="frontend", zone="a")
    # Not active (draining, then dead): the channel stays homed on the node under test.
    owner = Peer(
        node_id="fe-owner",
        role="frontend",
        zone="b",
        alive=alive,
        active=False,
        status="alive" if alive else "dead",
    )
    new_owner = Peer(node_id="fe-new", role="frontend", zone="b", active=False, alive=not cut_off)
    router = Peer(node_id="rt1", role="router", zone="a", alive=not cut_off)
    node.channels.set_view(now, ClusterView({p.node_id: p for p in (me, owner, new_owner, router)}))


COPY_TTL = TTL + 1000  # connectionStateTtl + maxIdleInterval after the copy's last write


def test_copy_holder_leaves_once_a_linger_after_the_owner_is_seen_dead_and_a_takeover_reenters():
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, conn, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    _with_owner(node, 5_000, alive=False)  # seen dead from here: its client lost its transport
    for t in range(5_000, 5_000 + LINGER, 1000):
        node.tick(t)
    assert events(observer.recv()) == []  # within the linger: the client may come back
    for t in range(5_000 + LINGER, 5_000 + LINGER + 3_000, 1000):
        node.tick(t)
    out = observer.recv()
    assert events(out) == [(LEAVE, "alice")]  # once, about the linger after the loss (Ably's 15 s)
    [leave] = [p for f in out for p in f.presence or ()]
    assert leave["connectionId"] == conn and synthesized(leave) and leave["data"] == "d"
    for t in range(5_000 + LINGER + 3_000, 3 * COPY_TTL, 1000):
        node.tick(t)
    assert events(observer.recv()) == []
    # The client is back within the TTL after all: a takeover from the copy re-enters her.
    copy = node.ownership.copies.get(3 * COPY_TTL - 5_000, conn)
    assert copy is None or copy["presence"]["gone"]


def test_a_copy_holder_that_may_be_the_one_cut_off_waits_for_the_copy_to_expire_unclaimed():
    # A zone partition: the owner's whole zone and every router are out of sight. The owner may
    # be alive with its client connected: leave only once the copy expires unclaimed.
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, _, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    _with_owner(node, 5_000, alive=False, cut_off=True)
    for t in range(5_000, 2 + COPY_TTL, 1000):
        node.tick(t)
    assert events(observer.recv()) == []
    for t in range(2 + COPY_TTL, 2 + COPY_TTL + 3_000, 1000):
        node.tick(t)
    assert events(observer.recv()) == [(LEAVE, "alice")]


def test_a_leave_waits_until_every_live_frontend_says_it_does_not_own_the_connection():
    # A presence_owned push that was lost (a partition) must not make the copy holder leave the
    # members of a connection taken over elsewhere: before leaving it asks every live frontend.
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, conn, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    bus = AnsweringBus({"fe-new": None})  # fe-new does not answer yet
    node.channels.bus = bus
    _with_owner(node, 5_000, alive=False)
    for t in range(5_000, 5_000 + 3 * LINGER, 1000):
        node.tick(t)
    assert events(observer.recv()) == [] and bus.asked
    bus.answers["fe-new"] = {"owned": True}  # it took the connection over: the watch ends
    for t in range(5_000 + 3 * LINGER, 5_000 + 6 * LINGER, 1000):
        node.tick(t)
    assert events(observer.recv()) == [] and conn not in node.presence.watches

    node2 = make_node()
    _with_owner(node2, 0, alive=True)
    state2, _, _ = _copy_of_a_member(node2, 1)
    node2.handle_peer_push(2, "fe-owner", SessionPut(state=state2))
    node2.channels.bus = AnsweringBus({"fe-new": {"owned": False}})
    _with_owner(node2, 5_000, alive=False)
    for t in range(5_000, 5_000 + LINGER + 3_000, 1000):
        node2.tick(t)
    # Nobody owns it: the leave is published (it waits at the home for a replica in the other zone).
    [pending] = node2.channels.homes["room"].pending
    assert [(p["action"], p["clientId"]) for p in pending.entry.frame.wire["presence"]] == [(LEAVE, "alice")]


def test_a_lingering_owner_that_was_taken_over_unheard_drops_its_stale_state_without_leaving():
    node = make_node()
    watcher = Client(node, clientId="bob")
    watcher.attach(0, "room")
    a = Client(node, clientId="alice")
    a.attach(0, "room")
    a.presence(1, "room", ENTER)
    watcher.recv()
    _with_owner(node, 2, alive=True)
    node.channels.bus = AnsweringBus({"fe-owner": {"owned": False}, "fe-new": {"owned": True}})
    node.transport_lost(3, a.session, a.outlet)
    for t in range(3, 3 + LINGER + 3_000, 500):
        node.tick(t)
    assert events(watcher.recv()) == [] and a.id not in node.sessions


class AnsweringBus:
    """Answers PresenceOwner questions per peer (None: no answer, as a partitioned peer);
    every other request (a replica's copy) succeeds and every push is dropped."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def request(self, peer, op, on_reply, timeout_s=2.0):
        from frontend.peerops import PresenceOwner, Refusal, Refused

        if isinstance(op, PresenceOwner):
            self.asked.append(peer)
            answer = self.answers.get(peer)
            if answer is None:
                on_reply(False, Refused(Refusal.UNSENT, f"no answer from {peer}"))
            else:
                on_reply(True, answer)
            return
        on_reply(True, None)

    def push(self, peer, op):
        return True


def test_copy_holder_never_leaves_for_an_owner_that_is_alive_or_a_connection_taken_over():
    node = make_node()
    _with_owner(node, 0, alive=True)
    state, conn, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-owner", SessionPut(state=state))
    for t in range(1_000, 3 * COPY_TTL, 1000):  # alive: its own timers rule, however old the copy
        node.tick(t)
    assert events(observer.recv()) == []
    _with_owner(node, 3 * COPY_TTL, alive=False)
    # A takeover elsewhere tells every frontend that it owns the connection now.
    node.handle_peer_push(3 * COPY_TTL, "fe-new", PresenceOwned(connection_id=conn, epoch=state["epoch"] + 1))
    for t in range(3 * COPY_TTL, 6 * COPY_TTL, 1000):
        node.tick(t)
    assert events(observer.recv()) == []


def test_a_copy_rewritten_by_a_new_owner_is_watched_for_that_owner():
    node = make_node()
    _with_owner(node, 0, alive=False)
    state, _, observer = _copy_of_a_member(node, 1)
    node.handle_peer_push(2, "fe-new", SessionPut(state={**state, "epoch": state["epoch"] + 1}))
    for t in range(1_000, 3 * COPY_TTL, 1000):  # fe-new is alive: nothing is left on its behalf
        node.tick(t)
    assert events(observer.recv()) == []


def test_presence_entries_cross_the_typed_peer_protocol():
    from frontend.peerops import Replicate

    lg = ChannelLog("ch", "ep", max_messages=10, retention_ms=1000)
    ev = {"action": ENTER, "id": "c:0:0", "connectionId": "c", "clientId": "u", "timestamp": 1}
    _, entry = lg.append(
        1, [ev], {"action": int(Action.PRESENCE), "channel": "ch"}, publisher="c", msg_serial=0
    )
    back = Replicate.from_args(Replicate(channel="ch", entry=entry).to_args()).entry
    assert back.is_presence and back.frame.wire["presence"] == [ev] and back.first_seq == back.last_seq == 1


def test_a_lost_history_announcement_carries_the_presence_set():
    """An SDK clears its members on a non-resumed ATTACHED without HAS_PRESENCE (RTP19a)."""
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    b.recv()
    members = node.channels.homes["room"].log.presence.to_wire()
    node.pubsub.notify_lost(3, "room", "ep:9", members)
    attached, sync = b.recv()
    assert attached.action is Action.ATTACHED and attached.error.code == ErrorCode.CONTINUITY_LOST
    assert attached.has(Flag.HAS_PRESENCE) and attached.channel_serial == "ep:9"
    assert [(p["action"], p["clientId"]) for p in sync.presence] == [(PRESENT, "alice")]


def test_client_sync_request_gets_the_current_set_and_an_empty_set_gets_one_empty_page():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    b.send(2, action=Action.SYNC, channel="room")
    [empty] = b.recv()  # ably-js channel.sync() ends its sync on the last page: one is always sent
    assert empty.action is Action.SYNC and empty.channel_serial.endswith(":") and not empty.presence
    a.presence(3, "room", ENTER, data="x")
    b.recv()
    b.send(4, action=Action.SYNC, channel="room")
    [sync] = b.recv()
    assert sync.channel_serial.endswith(":")
    assert [(p["action"], p["clientId"]) for p in sync.presence] == [(PRESENT, "alice")]
    c = Client(node, clientId="carol")
    c.send(5, action=Action.SYNC, channel="room")  # not attached: refused in the channel's scope
    [err] = c.recv()
    assert err.action is Action.ERROR and err.channel == "room"
    assert err.error.code == ErrorCode.CHANNEL_OPERATION_FAILED


def test_entering_again_while_present_is_an_update():
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER, data="1")
    a.presence(3, "room", ENTER, data="2")  # an SDK's RTP17 re-entry of a member still present
    a.presence(4, "room", LEAVE)
    a.presence(5, "room", ENTER, data="3")
    assert events(b.recv()) == [(ENTER, "alice"), (UPDATE, "alice"), (LEAVE, "alice"), (ENTER, "alice")]


def test_a_resume_while_the_server_leaves_are_being_numbered_reenters_after_them():
    # Chaos seed 11: the owner's leave waited for a home out of reach while the client resumed;
    # the re-entry was numbered first and the leave after it. One server publish per connection.
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    b.recv()
    held = []
    real_publish = node.presence._publish

    def holding(now, conn, channel, msg_serial, events_, done):
        held.append((now, conn, channel, msg_serial, events_, done))

    node.presence._publish = holding  # the home does not answer (yet)
    node.transport_lost(100, a.session, a.outlet)
    node.tick(100 + LINGER)
    assert [e["action"] for h in held for e in h[4]] == [LEAVE]
    a.resume(100 + LINGER + 10)  # back while the leave is still on its way
    assert [e["action"] for h in held for e in h[4]] == [LEAVE]  # no enter yet
    node.presence._publish = real_publish
    now, conn, channel, msg_serial, events_, done = held.pop()
    real_publish(now, conn, channel, msg_serial, events_, done)  # the leave is numbered now
    assert events(b.recv()) == [(LEAVE, "alice"), (ENTER, "alice")]


def test_a_draining_node_leaves_no_member_after_the_linger():
    # Chaos seed 1141510304 (t 77-85 s): fe-b1's drain cut sub19 at 78.3 s; the client resumed on
    # fe-a2 at 83.7 s, after the 5 s linger, and the draining node had left its member at 83.3 s.
    # A drain hands connections over with their members; one not back in time leaves its copy on
    # another frontend, whose watch leaves the members.
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER, data="d")
    b.recv()
    node.presence.draining = True
    node.transport_lost(100, a.session, a.outlet)
    for t in range(100, 100 + 4 * LINGER, 1_000):
        node.tick(t)
    assert events(b.recv()) == []
    node.presence.draining = False  # (a node that stays, e.g. a drain that was called off)
    node.tick(100 + 4 * LINGER + 2_000)
    assert events(b.recv()) == [(LEAVE, "alice")]


def test_the_clients_enter_during_the_servers_reentry_is_an_update():
    # Chaos seed 607435835: a connection came back (90003: its channels' serials were gone) while
    # the server's re-entry of its member was still being numbered; the SDK re-entered the member
    # after the non-resumed attach, and observers saw ENTER then ENTER with no leave between.
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    node.transport_lost(100, a.session, a.outlet)
    node.tick(100 + LINGER)
    node.tick(100 + 2 * LINGER)
    assert events(b.recv()) == [(ENTER, "alice"), (LEAVE, "alice")]
    held = []
    real_publish = node.presence._publish

    def holding(now, conn, channel, msg_serial, events_, done):
        held.append((now, conn, channel, msg_serial, events_, done))

    node.presence._publish = holding  # the home answers late
    r = a.resume(100 + 3 * LINGER)
    r.msg_serial = a.msg_serial
    r.presence(100 + 3 * LINGER + 5, "room", ENTER)  # the SDK's own re-entry
    node.presence._publish = real_publish
    for now, conn, channel, msg_serial, events_, done in held:
        real_publish(now, conn, channel, msg_serial, events_, done)
    assert events(b.recv()) == [(ENTER, "alice"), (UPDATE, "alice")]


def test_our_own_leave_fanned_out_after_the_reentry_is_not_answered_with_another_enter():
    # Chaos seed 1189035642: fe-b1's linger leave of sub25 was numbered, the client resumed and the
    # re-entry completed, and only then did the leave's fan-out reach fe-b1: taken for a stale leave
    # of a live member (presence.stale_leave_reentered), it entered sub25 a second time.
    node = make_node()
    a, b = Client(node, clientId="alice"), Client(node, clientId="bob")
    for c in (a, b):
        c.attach(1, "room")
        c.recv()
    a.presence(2, "room", ENTER)
    node.transport_lost(100, a.session, a.outlet)
    node.tick(100 + LINGER)
    frames = b.recv()
    [leave] = [p for f in frames if f.action is Action.PRESENCE for p in f.presence if p["action"] == LEAVE]
    r = a.resume(100 + LINGER + 500)
    assert events(b.recv()) == [(ENTER, "alice")]
    node.presence.copy_watches.entry_seen(100 + LINGER + 600, "room", [dict(leave)])  # the late fan-out
    assert events(b.recv()) == []
    assert r.session.presence.channels["room"]["alice"]

"""FrontendNode: session lifecycle, attach/resume rules, publish, ACK order, limits.

Pure: every call takes ``now`` in milliseconds; a 120 s TTL takes no time.
"""

import dataclasses
import itertools
import random

import pytest

from frontend.channel_log import ChannelLog
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.session import Session, SessionState
from frontend.testing import MemoryOutlet
from kernel.errors import ErrorCode, RemoteProtocolError
from kernel.protocol import Action, Flag, ProtocolMessage

TTL = 10_000


def make_node(**over) -> FrontendNode:
    cfg = FrontendConfig(dev=True, connection_state_ttl_ms=TTL, max_idle_interval_ms=1000, **over)
    return FrontendNode(cfg, rng=random.Random(7))


class Client:
    """One connection as seen from the wire: an outlet plus helpers."""

    def __init__(self, node: FrontendNode, now: int = 0, fmt="json", limit=1_000_000, **params):
        self.node = node
        self.outlet = MemoryOutlet(fmt, limit)
        self.session = node.connect(now, {"v": "6", **params}, self.outlet)
        self.msg_serial = 0

    def recv(self):
        return self.outlet.drain()

    def send(self, now, **fields):
        self.node.handle(now, self.session, ProtocolMessage(**fields))

    def attach(self, now, channel, serial=None, flags=0):
        self.send(now, action=Action.ATTACH, channel=channel, channel_serial=serial, flags=flags)

    def publish(self, now, channel, *datas, msg_serial=None):
        ms = self.msg_serial if msg_serial is None else msg_serial
        if msg_serial is None:
            self.msg_serial += 1
        self.send(
            now,
            action=Action.MESSAGE,
            channel=channel,
            msg_serial=ms,
            messages=[{"name": "n", "data": d} for d in datas],
        )

    def drop(self, now):
        self.node.transport_lost(now, self.session, self.outlet)

    def resume(self, now, **params):
        c = Client(self.node, now, resume=self.session.key, **params)
        return c


def test_connected_carries_full_connection_details():
    node = make_node()
    c = Client(node)
    [connected] = c.recv()
    assert connected.action is Action.CONNECTED
    d = connected.connection_details
    assert connected.connection_id == c.session.connection_id
    for field in ("connectionKey", "connectionStateTtl", "maxIdleInterval", "maxMessageSize", "serverId"):
        assert d[field] is not None
    assert d["connectionStateTtl"] == TTL
    assert connected.error is None


def test_attach_grants_default_modes_and_channel_serial():
    node = make_node()
    c = Client(node)
    c.recv()
    c.attach(1, "ch")
    [att] = c.recv()
    assert att.action is Action.ATTACHED
    assert att.has(Flag.SUBSCRIBE) and att.has(Flag.PUBLISH)
    assert not att.has(Flag.RESUMED) and not att.has(Flag.HAS_PRESENCE)
    assert att.channel_serial == node.channels.local_log("ch").last_serial
    assert att.error is None


def test_publish_is_stamped_fanned_out_and_acked_with_res():
    node = make_node()
    pub, sub = Client(node), Client(node)
    sub.attach(1, "ch")
    pub.recv(), sub.recv()
    pub.publish(2, "ch", "a", "b")
    [ack] = pub.recv()
    assert ack.action is Action.ACK and ack.msg_serial == 0 and ack.count == 1
    serials = ack.res[0]["serials"]
    [msg] = sub.recv()
    assert msg.action is Action.MESSAGE and msg.channel_serial == serials[-1]
    cid = pub.session.connection_id
    assert [m["id"] for m in msg.messages] == [f"{cid}:0:0", f"{cid}:0:1"]
    assert [m["serial"] for m in msg.messages] == serials
    assert all(m["connectionId"] == cid and m["timestamp"] == 2 for m in msg.messages)


def test_publisher_gets_its_own_message_unless_echo_false():
    node = make_node()
    echo, quiet = Client(node), Client(node, echo="false")
    for c in (echo, quiet):
        c.attach(1, "ch")
        c.recv()
        c.publish(2, "ch", "x")
    assert [m.action for m in echo.recv()] == [Action.MESSAGE, Action.ACK, Action.MESSAGE]
    assert [m.action for m in quiet.recv()] == [Action.ACK]  # its own message is not echoed


def test_no_channel_traffic_before_attached_on_a_new_transport():
    node = make_node()
    sub, pub = Client(node), Client(node)
    sub.attach(1, "ch")
    serial = sub.recv()[-1].channel_serial
    sub.drop(2)
    resumed = sub.resume(3)
    pub.publish(4, "ch", "m1")
    assert [m.action for m in resumed.recv()] == [Action.CONNECTED]  # m1 held back
    resumed.attach(5, "ch", serial)
    att, m1 = resumed.recv()
    assert att.action is Action.ATTACHED and att.has(Flag.RESUMED) and att.channel_serial == serial
    assert m1.messages[0]["data"] == "m1"


def test_resume_keeps_id_and_replays_exactly_the_missed_messages():
    node = make_node()
    sub, pub = Client(node), Client(node)
    sub.attach(1, "ch")
    pub.publish(2, "ch", 1)
    serial = sub.recv()[-1].channel_serial
    sub.drop(3)
    for i in range(2, 6):
        pub.publish(3 + i, "ch", i)
    assert sub.session.state is SessionState.DETACHED
    r = sub.resume(20)
    [connected] = r.recv()
    assert connected.connection_id == sub.session.connection_id and connected.error is None
    r.attach(21, "ch", serial)
    att, *msgs = r.recv()
    assert att.has(Flag.RESUMED)
    assert [x["data"] for m in msgs for x in m.messages] == [2, 3, 4, 5]
    assert len(msgs) == 1  # the replay is coalesced into one frame
    assert msgs[-1].channel_serial == node.channels.local_log("ch").last_serial
    pub.publish(30, "ch", 6)
    assert [m.messages[0]["data"] for m in r.recv()] == [6]


def test_attach_with_uncovered_serial_gets_90003_without_resumed():
    node = make_node(channel_log_max_messages=16)
    sub, pub = Client(node), Client(node)
    sub.attach(1, "ch")
    serial = sub.recv()[-1].channel_serial
    sub.drop(2)
    for i in range(40):
        pub.publish(3, "ch", i)
    r = sub.resume(4)
    r.recv()
    r.attach(5, "ch", serial)
    [att] = r.recv()
    assert not att.has(Flag.RESUMED)
    assert att.error.code == ErrorCode.CONTINUITY_LOST
    assert att.channel_serial == node.channels.local_log("ch").last_serial


def test_attach_from_another_epoch_gets_90003():
    node = make_node()
    c = Client(node)
    c.attach(1, "ch", "otherepoch:3")
    [att] = c.recv()[-1:]
    assert att.error.code == ErrorCode.CONTINUITY_LOST and not att.has(Flag.RESUMED)


def test_detached_session_expires_after_ttl_and_resume_then_fails_with_80008():
    node = make_node()
    c = Client(node)
    c.attach(1, "ch")
    c.drop(100)
    node.tick(100 + TTL - 1)
    assert c.session.state is SessionState.DETACHED
    node.tick(100 + TTL)
    assert c.session.state is SessionState.EXPIRED
    r = c.resume(100 + TTL + 1)
    [connected] = r.recv()
    assert connected.error.code == ErrorCode.CONNECTION_EXPIRED
    assert connected.connection_id != c.session.connection_id


def test_forged_resume_key_gets_80018_and_a_new_connection():
    node = make_node()
    victim = Client(node)
    victim.attach(1, "secret")
    victim.drop(2)
    key = victim.session.key
    forged = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    c = Client(node, 3, resume=forged)
    [connected] = c.recv()
    assert connected.error.code == ErrorCode.INVALID_CONNECTION_KEY
    assert connected.connection_id != victim.session.connection_id
    assert victim.session.state is SessionState.DETACHED  # untouched


def test_close_disposes_state_and_answers_closed():
    node = make_node()
    c = Client(node)
    c.recv()
    c.send(1, action=Action.CLOSE)
    assert [m.action for m in c.recv()] == [Action.CLOSED]
    assert c.outlet.closed and c.session.state is SessionState.CLOSED
    assert c.session.connection_id not in node.sessions
    r = c.resume(2)
    assert r.recv()[0].error.code == ErrorCode.CONNECTION_EXPIRED


def test_disconnect_keeps_state():
    node = make_node()
    c = Client(node)
    c.send(1, action=Action.DISCONNECT)
    assert c.outlet.closed and c.session.state is SessionState.DETACHED


def test_resent_publish_is_acked_with_original_serials_and_not_published_twice():
    node = make_node()
    pub, sub = Client(node), Client(node)
    sub.attach(1, "ch")
    pub.recv(), sub.recv()
    pub.publish(2, "ch", "once", msg_serial=0)
    first = pub.recv()[-1].res
    pub.drop(3)
    r = pub.resume(4)
    r.recv()
    r.publish(5, "ch", "once", msg_serial=0)
    [ack] = r.recv()
    assert ack.action is Action.ACK and ack.res == first
    assert len(sub.recv()) == 1
    assert node.channels.local_log("ch").last_seq == 1


def test_a_publish_resent_after_the_dedupe_window_is_acked_once_if_its_session_lives():
    # Chaos seed 259956562: a Comet client, cut as a slow consumer, noticed 17 s later and resumed
    # (within the TTL of the cut) re-sending a publish numbered 31 s before; the home's dedupe
    # record (TTL + idle = 21 s from its numbering) had aged out and it was numbered twice.
    node = make_node()
    pub, sub = Client(node), Client(node)
    sub.attach(1, "ch")
    pub.recv(), sub.recv()
    pub.publish(2, "ch", "once", msg_serial=0)
    first = pub.recv()[-1].res  # queued, but never read: the client has no ACK
    pub.drop(TTL - 500)  # the server cuts the transport late (the window is TTL + idle from 2)
    now = TTL - 500
    while now < 2 * TTL - 1_000:  # past the dedupe window, inside the TTL since the cut
        now += 250
        node.tick(now)
    # Meanwhile the channel's log moved (a drain hands it over): a transfer carries the retained
    # entries only, so the new home's dedupe knows nothing of the publish any more.
    home = node.channels.homes["ch"]
    home.log = ChannelLog.from_snapshot(
        "ch", home.log.snapshot(), now_ms=now, max_messages=1000, retention_ms=TTL + 1_000
    )
    r = pub.resume(now)
    assert r.recv()[0].connection_id == pub.session.connection_id  # the same connection
    r.publish(now, "ch", "once", msg_serial=0)
    [ack] = [m for m in r.recv() if m.action is Action.ACK]
    assert ack.res == first
    assert [m.action for m in sub.recv()].count(Action.MESSAGE) == 1
    assert node.channels.local_log("ch").last_seq == 1


def test_acks_are_in_order_and_nacks_carry_codes():
    node = make_node(max_message_size=300)
    c = Client(node)
    c.recv()
    c.publish(1, "ch", "ok")
    c.publish(2, "ch", "x" * 400)
    c.send(
        3, action=Action.MESSAGE, channel="ch", msg_serial=2, messages=[{"data": 1, "clientId": "someone"}]
    )
    c.send(4, action=Action.PRESENCE, channel="ch", msg_serial=3, presence=[{"action": 2}])
    msgs = [m for m in c.recv() if m.action in (Action.ACK, Action.NACK)]
    assert [(m.action, m.msg_serial) for m in msgs] == [
        (Action.ACK, 0),
        (Action.NACK, 1),
        (Action.ACK, 2),
        (Action.NACK, 3),
    ]
    assert msgs[1].error.code == ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED


def test_client_id_mismatch_is_nacked_40012_for_identified_connections():
    node = make_node()
    c = Client(node, clientId="amy")
    c.recv()
    c.send(1, action=Action.MESSAGE, channel="ch", msg_serial=0, messages=[{"data": 1, "clientId": "bob"}])
    [nack] = c.recv()
    assert nack.action is Action.NACK and nack.error.code == ErrorCode.INVALID_CLIENT_ID


def test_capability_denies_publish_with_40160_and_subscribe_with_channel_error():
    from frontend.auth import Identity, parse_capability

    node = make_node()
    c = Client(node)
    c.session.identity = Identity("k", None, parse_capability({"ro": ["subscribe"]}))
    c.recv()
    c.publish(1, "ro", "x")
    [nack] = c.recv()
    assert nack.error.code == ErrorCode.CAPABILITY_DENIED
    c.attach(2, "ro")
    [att] = c.recv()
    assert att.has(Flag.SUBSCRIBE) and not att.has(Flag.PUBLISH)
    c.attach(3, "forbidden")
    [err] = c.recv()
    assert err.action is Action.ERROR and err.channel == "forbidden"
    assert err.error.code == ErrorCode.CAPABILITY_DENIED


def test_slow_consumer_is_cut_resumably_and_catches_up_by_replay():
    node = make_node()
    pub = Client(node)
    slow = Client(node, limit=5)
    slow.attach(1, "ch")
    serial = slow.recv()[-1].channel_serial
    for i in range(10):
        pub.publish(2, "ch", i)
    assert slow.outlet.closed
    assert slow.outlet.final.wire["action"] == Action.DISCONNECTED
    assert slow.outlet.final.wire["error"]["code"] == ErrorCode.SLOW_CONSUMER
    delivered = [m.messages[0]["data"] for m in slow.recv()]
    assert slow.session.state is SessionState.DETACHED
    r = slow.resume(3)
    r.recv()
    last = node.channels.local_log("ch").serial(len(delivered))  # serial of the last delivered message
    r.attach(4, "ch", last if delivered else serial)
    att, *rest = r.recv()
    assert att.has(Flag.RESUMED)
    assert delivered + [x["data"] for m in rest for x in m.messages] == list(range(10))


def test_replay_larger_than_the_outbox_is_not_cut_and_keeps_order():
    node = make_node()
    pub = Client(node)
    sub = Client(node, limit=16)
    sub.attach(1, "ch")
    serial = sub.recv()[-1].channel_serial
    sub.drop(2)
    for i in range(1000):
        pub.publish(3, "ch", i)
    r = sub.resume(4)
    r.outlet.limit = 16
    r.recv()
    r.attach(5, "ch", serial)
    att, *frames = r.recv()
    assert att.has(Flag.RESUMED) and not r.outlet.closed
    assert [x["data"] for f in frames for x in f.messages] == list(range(1000))
    assert len(frames) <= 1000 // 256 + 1
    assert [x["serial"] for f in frames for x in f.messages] == [
        node.channels.local_log("ch").serial(i) for i in range(1, 1001)
    ]


def test_replay_skips_own_messages_when_echo_is_off():
    node = make_node()
    me = Client(node, echo="false")
    other = Client(node)
    me.attach(1, "ch")
    serial = me.recv()[-1].channel_serial
    me.publish(2, "ch", "mine")
    assert [m.action for m in me.recv()] == [Action.ACK]
    me.drop(3)
    other.publish(3, "ch", "theirs")
    assert node.channels.local_log("ch").last_seq == 2
    r = me.resume(4, echo="false")
    r.recv()
    r.attach(5, "ch", serial)
    _, *frames = r.recv()
    assert [x["data"] for f in frames for x in f.messages] == ["theirs"]


def test_heartbeat_ping_id_is_echoed():
    node = make_node()
    c = Client(node)
    c.recv()
    c.send(1, action=Action.HEARTBEAT, id="ping-1")
    [hb] = c.recv()
    assert hb.action is Action.HEARTBEAT and hb.id == "ping-1"


def test_channel_limit():
    node = make_node(max_channels_per_connection=2)
    c = Client(node)
    c.recv()
    for name in ("a", "b", "c"):
        c.attach(1, name)
    *_, err = c.recv()
    assert err.action is Action.ERROR and err.error.code == ErrorCode.RATE_LIMITED


def test_malformed_input_raises_remote_protocol_error():
    node = make_node()
    c = Client(node)
    with pytest.raises(RemoteProtocolError):
        c.send(1, action=Action.MESSAGE, channel="ch", messages=[{}])  # no msgSerial
    with pytest.raises(RemoteProtocolError):
        c.send(1, action=Action.ATTACH)


def test_detached_session_memory_does_not_grow_with_traffic():
    node = make_node()
    pub, sub = Client(node), Client(node)
    for ch in range(10):
        sub.attach(1, f"ch{ch}")
    sub.drop(2)
    before = sub.session.state_size()
    for i in range(2000):
        pub.publish(3, f"ch{i % 10}", i)
    assert sub.session.state_size() <= before + 16 * 10  # serial strings may grow a digit


def test_recover_with_same_key_works_like_resume():
    node = make_node()
    c = Client(node)
    c.drop(1)
    r = Client(node, 2, recover=c.session.key)
    [connected] = r.recv()
    assert connected.connection_id == c.session.connection_id and connected.error is None


def test_second_transport_resuming_replaces_the_first():
    node = make_node()
    c = Client(node)
    r = c.resume(1)
    assert c.outlet.closed
    assert node.outlets[c.session.connection_id] is r.outlet


class RecordingBus:
    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, dict]] = []

    def push(self, peer, op):
        self.pushes.append((peer, op.OP, op.to_args()))
        return True

    def request(self, peer, op, on_reply, timeout_s=3.0):
        pass


def test_an_idle_connections_copy_is_rewritten_before_its_secondary_forgets_it():
    # Chaos seed 25705: an attached but idle connection wrote its copy once; the secondary dropped it
    # after TTL + idle without a write, and the owner's loss 22 s later ended in 80008.
    node = make_node()
    bus = RecordingBus()
    node.channels.bus = bus
    c = Client(node, 0)
    c.session.secondary = "fe-b1"
    c.attach(0, "idle")
    lifetime = TTL + 1000  # what SessionCopies keeps a copy without a write
    now = 0
    written = []
    while now <= 3 * lifetime:
        node.tick(now)
        written += [now for peer, op, args in bus.pushes if op == "session_put" and peer == "fe-b1"]
        bus.pushes.clear()
        now += 250
    assert written, "the copy was never written"
    gaps = [b - a for a, b in itertools.pairwise(written)]
    assert max(gaps) < lifetime and 3 * lifetime - written[-1] < lifetime


def test_a_reauth_grants_the_modes_asked_at_attach_that_the_new_capability_allows():
    node = make_node()
    c = Client(node)
    c.recv()
    c.session.identity = dataclasses.replace(c.session.identity, capability={"ch": frozenset({"subscribe"})})
    c.attach(0, "ch")
    [attached] = c.recv()
    assert attached.flags & Flag.SUBSCRIBE and not attached.flags & Flag.PUBLISH
    cur = c.session.channels["ch"]
    assert cur.requested & Flag.PUBLISH  # asked for (the defaults), not granted
    c.session.identity = dataclasses.replace(c.session.identity, capability={"ch": frozenset({"*"})})
    node.channel_modes.apply_capability(1, c.session)
    assert cur.modes & Flag.PUBLISH and cur.modes & Flag.SUBSCRIBE
    c.session.identity = dataclasses.replace(c.session.identity, capability={"ch": frozenset({"publish"})})
    node.channel_modes.apply_capability(2, c.session)
    assert cur.modes & Flag.PUBLISH and not cur.modes & Flag.SUBSCRIBE
    assert c.session not in node.subscribers.get("ch", {}).values()


def test_a_sessions_copy_keeps_the_modes_asked_for_and_reads_an_older_copy():
    node = make_node()
    c = Client(node)
    c.recv()
    c.send(0, action=Action.ATTACH, channel="ch", flags=int(Flag.SUBSCRIBE))
    c.recv()
    wire = c.session.to_wire()
    back = Session.from_wire(wire, key="k", epoch=2, secondary=None, now_ms=0)
    assert back.channels["ch"].requested == Flag.SUBSCRIBE == back.channels["ch"].modes
    wire["channels"] = {"ch": [int(Flag.SUBSCRIBE), "e:0"]}  # written before ``requested`` was kept
    older = Session.from_wire(wire, key="k", epoch=2, secondary=None, now_ms=0)
    assert older.channels["ch"].requested == older.channels["ch"].modes == Flag.SUBSCRIBE


def test_a_reauth_that_keeps_presence_subscribe_keeps_the_session_registered():
    node = make_node()
    c = Client(node)
    c.recv()
    c.send(0, action=Action.ATTACH, channel="ch", flags=int(Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE))
    c.recv()
    assert c.session in node.subscribers["ch"].values()
    c.session.identity = dataclasses.replace(c.session.identity, capability={"ch": frozenset({"presence"})})
    node.channel_modes.apply_capability(1, c.session)
    cur = c.session.channels["ch"]
    assert cur.modes == Flag.PRESENCE_SUBSCRIBE
    assert c.session in node.subscribers["ch"].values()  # presence events still flow
    c.session.identity = dataclasses.replace(c.session.identity, capability={"ch": frozenset({"publish"})})
    node.channel_modes.apply_capability(2, c.session)
    assert "ch" not in node.subscribers


def test_a_secondary_back_in_the_map_gets_every_copy_again():
    # Chaos seed 931193163 (FAULTS=100): zone a was lost and restarted; fe-b1's connections had their
    # copies on zone a's frontends, which came back empty. With no other zone while zone a was away,
    # their secondary stayed the dead node, and once it was alive again nothing re-wrote the copy
    # (only a secondary *not* alive got a fresh one), so fe-b1's kill 0.6 s later left no copy
    # anywhere: 80008 and a new connectionId within the TTL (discontinuity_within_ttl 9).
    from kernel.placement import ClusterView, Peer

    node = make_node(node_id="fe-a1", zone="a")
    bus = RecordingBus()
    node.channels.bus = bus

    def view(b1_alive: bool) -> ClusterView:
        return ClusterView({
            "fe-a1": Peer(node_id="fe-a1", role="frontend", zone="a"),
            "fe-b1": Peer(node_id="fe-b1", role="frontend", zone="b", alive=b1_alive),
        })

    node.apply_view(0, view(True))
    c = Client(node, 0)
    c.session.secondary = "fe-b1"
    c.attach(0, "ch")
    node.apply_view(1, view(False))  # fe-b1 lost: no other zone to copy to
    bus.pushes.clear()
    node.apply_view(2, view(True))  # back, restarted with no copies
    assert [p for p, op, _ in bus.pushes if op == "session_put"] == ["fe-b1"]

"""ClientSession: one test per rule, driven with plain numbers for time."""

from __future__ import annotations

import random

import pytest

from continuity.backoff import Backoff
from continuity.errors import ConnectionClosedError, ConnectionSuspendedError
from continuity.events import (
    ChannelEvent,
    ChannelState,
    ConnectionEvent,
    ConnectionState,
    MessageReceived,
    Pong,
    PublishAcked,
    PublishFailed,
    TransportDropped,
)
from continuity.recovery import RecoveryKey
from continuity.session import ClientSession, SessionConfig
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import Action, Flag, ProtocolMessage

DETAILS = {"connectionKey": "key-1", "connectionStateTtl": 120_000, "maxIdleInterval": 15_000}


def connected(
    conn_id: str = "c1", key: str = "key-1", error: ErrorInfo | None = None, **details: object
) -> ProtocolMessage:
    return ProtocolMessage(
        action=Action.CONNECTED,
        connection_id=conn_id,
        connection_details={**DETAILS, "connectionKey": key, **details},
        error=error,
    )


def attached(
    channel: str, serial: str | None, *, resumed: bool = False, error: ErrorInfo | None = None
) -> ProtocolMessage:
    flags = int(Flag.PUBLISH | Flag.SUBSCRIBE) | (int(Flag.RESUMED) if resumed else 0)
    return ProtocolMessage(
        action=Action.ATTACHED, channel=channel, channel_serial=serial, flags=flags, error=error
    )


def ack(serial: int, count: int = 1, res: list[list[str]] | None = None) -> ProtocolMessage:
    return ProtocolMessage(
        action=Action.ACK, msg_serial=serial, count=count, res=[{"serials": s} for s in (res or [])]
    )


def up(session: ClientSession | None = None, now: float = 0.0) -> ClientSession:
    s = session or ClientSession(rng=random.Random(1))
    s.start_connect(now)
    s.handle(now, connected())
    s.outgoing()
    s.events()
    return s


def sent(s: ClientSession) -> list[tuple[Action, str | None, int | None, str | None]]:
    return [(pm.action, pm.channel, pm.msg_serial, pm.channel_serial) for pm in s.outgoing()]


def test_msg_serial_is_assigned_at_send_time_from_zero() -> None:
    s = up()
    s.publish("a", [{"data": 1}])
    s.publish("a", [{"data": 2}])
    assert sent(s) == [(Action.MESSAGE, "a", 0, None), (Action.MESSAGE, "a", 1, None)]
    assert s.msg_serial == 2


def test_publish_while_connecting_is_sent_on_connected() -> None:
    s = ClientSession()
    s.start_connect(0)
    s.publish("a", [{"data": 1}])
    assert s.outgoing() == []
    s.handle(0, connected())
    assert sent(s) == [(Action.MESSAGE, "a", 0, None)]


def test_ack_completes_from_the_head_with_res_serials() -> None:
    s = up()
    tokens = [s.publish("a", [{"data": i}]) for i in range(3)]
    s.outgoing()
    s.handle(1, ack(0, 2, [["e:1"], ["e:2"]]))
    assert s.events() == [
        PublishAcked(token=tokens[0], serials=["e:1"]),
        PublishAcked(token=tokens[1], serials=["e:2"]),
    ]
    assert s.pending_count == 1
    s.handle(1, ack(2, 1, [["e:3"]]))
    assert s.events() == [PublishAcked(token=tokens[2], serials=["e:3"])]


def test_nack_fails_with_the_server_code() -> None:
    s = up()
    token = s.publish("a", [{"data": "x" * 10}])
    err = ErrorInfo.of(ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED, "too big")
    s.handle(1, ProtocolMessage(action=Action.NACK, msg_serial=0, count=1, error=err))
    assert s.events() == [PublishFailed(token=token, reason=err)]


def test_attach_sends_serial_and_attached_reports_resumed() -> None:
    s = up()
    s.attach(0, "a")
    assert sent(s) == [(Action.ATTACH, "a", None, None)]
    s.handle(0, attached("a", "e:5"))
    events = s.events()
    assert events[-1] == ChannelEvent(
        channel="a", state=ChannelState.ATTACHED, previous=ChannelState.ATTACHING, resumed=False
    )
    assert s.channel("a").serial == "e:5"


def test_message_serial_is_stored_before_the_state_check() -> None:
    s = up()
    s.channel("a")  # known but not attached
    s.handle(
        0, ProtocolMessage(action=Action.MESSAGE, channel="a", channel_serial="e:9", messages=[{"data": 1}])
    )
    assert s.channel("a").serial == "e:9"
    assert s.events() == []  # RTL17: not surfaced


def test_message_fields_are_filled_from_the_protocol_message() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:0"))
    s.events()
    s.handle(
        0,
        ProtocolMessage(
            action=Action.MESSAGE,
            channel="a",
            channel_serial="e:1",
            id="p:3",
            connection_id="p",
            timestamp=7,
            messages=[{"data": 1}, {"data": 2, "id": "x"}],
        ),
    )
    msgs = [e for e in s.events() if isinstance(e, MessageReceived)]
    assert [m.message["id"] for m in msgs] == ["p:3:0", "x"]
    assert all(m.message["connectionId"] == "p" and m.message["timestamp"] == 7 for m in msgs)


def lose(s: ClientSession, now: float) -> None:
    s.transport_lost(now)
    assert s.state is ConnectionState.DISCONNECTED
    assert s.reconnect_at is not None
    s.start_connect(s.reconnect_at)


def test_resume_uses_the_key_and_resends_pending_with_original_serials_before_attaches() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:3"))
    s.publish("a", [{"data": 1}])
    s.publish("a", [{"data": 2}])
    s.outgoing()
    s.handle(0, ack(0, 1, [["e:4"]]))
    lose(s, 1)
    assert s.connect_params() == {"resume": "key-1"}
    s.handle(2, connected("c1", "key-2"))
    assert sent(s) == [(Action.MESSAGE, "a", 1, None), (Action.ATTACH, "a", None, "e:3")]
    ev = [e for e in s.events() if isinstance(e, ConnectionEvent)][-1]
    assert ev.state is ConnectionState.CONNECTED and ev.resumed and ev.reason is None
    assert s.connection_key == "key-2"


def test_failed_resume_renumbers_pending_from_zero_and_surfaces_the_reason() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:3"))
    for i in range(3):
        s.publish("a", [{"data": i}])
    s.outgoing()
    s.handle(0, ack(0, 1, [["e:4"]]))
    lose(s, 1)
    err = ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "expired")
    s.handle(2, connected("c2", "key-9", error=err))
    assert sent(s) == [
        (Action.MESSAGE, "a", 0, None),
        (Action.MESSAGE, "a", 1, None),
        (Action.ATTACH, "a", None, "e:3"),
    ]
    ev = [e for e in s.events() if isinstance(e, ConnectionEvent)][-1]
    assert not ev.resumed and ev.reason == err and ev.connection_id == "c2"
    assert s.msg_serial == 2


def test_reattach_without_resumed_carries_the_continuity_error() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:3"))
    lose(s, 1)
    s.handle(2, connected())
    s.events()
    lost = ErrorInfo.of(ErrorCode.CONTINUITY_LOST, "expired")
    s.handle(2, attached("a", "e:40", error=lost))
    assert s.events() == [
        ChannelEvent(
            channel="a",
            state=ChannelState.ATTACHED,
            previous=ChannelState.ATTACHING,
            resumed=False,
            reason=lost,
        )
    ]


def test_server_disconnected_drops_the_transport_and_schedules_a_resume() -> None:
    s = up()
    s.handle(
        1, ProtocolMessage(action=Action.DISCONNECTED, error=ErrorInfo.of(ErrorCode.SLOW_CONSUMER, "slow"))
    )
    events = s.events()
    assert isinstance(events[0], TransportDropped)
    assert s.state is ConnectionState.DISCONNECTED and s.wants_transport(s.reconnect_at or 0)


def test_error_without_channel_is_fatal() -> None:
    s = up()
    token = s.publish("a", [{}])
    s.handle(1, ProtocolMessage(action=Action.ERROR, error=ErrorInfo.of(ErrorCode.BAD_REQUEST, "bad")))
    assert s.state is ConnectionState.FAILED
    assert any(isinstance(e, PublishFailed) and e.token == token for e in s.events())
    with pytest.raises(Exception, match="failed"):
        s.publish("a", [{}])


def test_error_with_channel_fails_only_that_channel() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(
        0,
        ProtocolMessage(
            action=Action.ERROR, channel="a", error=ErrorInfo.of(ErrorCode.CAPABILITY_DENIED, "no")
        ),
    )
    assert s.channel("a").state is ChannelState.FAILED
    assert s.state is ConnectionState.CONNECTED


def test_idle_timeout_drops_the_transport() -> None:
    s = up(now=0)
    deadline = s.next_deadline()
    assert deadline == pytest.approx(15 + 10)
    s.handle(5, ProtocolMessage(action=Action.HEARTBEAT))
    assert s.next_deadline() == pytest.approx(30)
    s.tick(29)
    assert s.state is ConnectionState.CONNECTED
    s.tick(30)
    assert s.state is ConnectionState.DISCONNECTED
    assert any(isinstance(e, TransportDropped) for e in s.events())


def test_connect_timeout() -> None:
    s = ClientSession()
    s.start_connect(0)
    s.tick(10)
    assert s.state is ConnectionState.DISCONNECTED


def test_ttl_expiry_suspends_fails_pending_and_keeps_the_key() -> None:
    s = up(ClientSession(SessionConfig(connection_state_ttl=3.0), rng=random.Random(2)))
    s.attach(0, "a")
    s.handle(0, attached("a", "e:1"))
    token = s.publish("a", [{}])
    s.transport_lost(1)
    s.events()
    s.tick(3.9)
    assert s.state is not ConnectionState.SUSPENDED
    s.tick(4.0)
    assert s.state is ConnectionState.SUSPENDED
    events = s.events()
    assert any(isinstance(e, PublishFailed) and e.token == token and not e.nacked for e in events)
    assert s.channel("a").state is ChannelState.SUSPENDED
    with pytest.raises(ConnectionSuspendedError):
        s.publish("a", [{}])
    # Keeps trying with its key: the server arbitrates (spec 6.1.0).
    assert s.connect_params() == {"resume": "key-1"}
    s.start_connect(s.reconnect_at or 0)
    s.handle(20, connected("c2", "key-2", error=ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "gone")))
    assert sent(s) == [(Action.ATTACH, "a", None, "e:1")]


def test_backoff_is_full_jitter_and_capped() -> None:
    b = Backoff(base=0.1, cap=5.0)
    rng = random.Random(3)
    assert [b.ceiling(i) for i in range(8)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    for attempt in range(100):
        assert 0 <= b.delay(attempt, rng) <= b.ceiling(attempt)


def test_reconnect_delays_grow_and_reset_on_connected() -> None:
    s = up(ClientSession(SessionConfig(backoff=Backoff(base=1, cap=4)), rng=random.Random(4)))
    now = 0.0
    for attempt in range(5):
        s.transport_lost(now)
        at = s.reconnect_at
        assert at is not None and now <= at <= now + min(4, 2**attempt)
        now = at
        s.start_connect(now)
    s.handle(now, connected())
    s.transport_lost(now)
    assert s.reconnect_at is not None and s.reconnect_at <= now + 1


def test_ping_echo_becomes_pong() -> None:
    s = up()
    s.ping("abc")
    assert [(pm.action, pm.id) for pm in s.outgoing()] == [(Action.HEARTBEAT, "abc")]
    s.handle(1, ProtocolMessage(action=Action.HEARTBEAT, id="abc"))
    assert s.events() == [Pong(id="abc")]


def test_close_sends_close_then_closed_is_terminal() -> None:
    s = up()
    s.close()
    assert [pm.action for pm in s.outgoing()] == [Action.CLOSE]
    s.handle(1, ProtocolMessage(action=Action.CLOSED))
    assert s.state is ConnectionState.CLOSED
    assert s.recovery_key() is None
    with pytest.raises(ConnectionClosedError):
        s.attach(2, "a")


def test_recovery_key_round_trip_and_recover_start() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:7"))
    s.publish("a", [{}])
    key = s.recovery_key()
    assert key is not None
    text = key.to_json()
    assert RecoveryKey.parse(text) == RecoveryKey(
        connection_key="key-1", msg_serial=1, channel_serials={"a": "e:7"}
    )
    r = ClientSession(recover=RecoveryKey.parse(text))
    assert r.connect_params() == {"recover": "key-1"}
    assert r.msg_serial == 1 and r.channel("a").serial == "e:7"
    assert r.channel("a").state is ChannelState.INITIALIZED  # not auto-attached (RTN16j)
    r.start_connect(0)
    r.handle(0, connected("c1", "key-3"))
    ev = [e for e in r.events() if isinstance(e, ConnectionEvent)][-1]
    assert ev.resumed and r.msg_serial == 1
    r.attach(1, "a")
    assert sent(r) == [(Action.ATTACH, "a", None, "e:7")]


def test_failed_recover_resets_msg_serial() -> None:
    r = ClientSession(recover=RecoveryKey(connection_key="k", msg_serial=5))
    r.start_connect(0)
    r.handle(0, connected("c9", "key-3", error=ErrorInfo.of(ErrorCode.INVALID_CONNECTION_KEY, "forged")))
    assert r.msg_serial == 0
    ev = [e for e in r.events() if isinstance(e, ConnectionEvent)][-1]
    assert not ev.resumed and ev.reason is not None and ev.reason.code == 80018


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        "[]",
        '{"connectionKey":1,"msgSerial":0}',
        '{"connectionKey":"k","msgSerial":-1}',
        '{"connectionKey":"k","msgSerial":true}',
    ],
)
def test_malformed_recovery_keys_are_ignored(text: str) -> None:
    assert RecoveryKey.parse(text) is None


def test_server_detached_reattaches_an_attached_channel() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:1"))
    s.outgoing()
    s.handle(1, ProtocolMessage(action=Action.DETACHED, channel="a"))
    assert sent(s) == [(Action.ATTACH, "a", None, "e:1")]
    assert s.channel("a").state is ChannelState.ATTACHING


def test_attach_timeout_suspends_the_channel() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(9, ProtocolMessage(action=Action.HEARTBEAT))
    s.tick(10)
    assert s.channel("a").state is ChannelState.SUSPENDED


def test_abandon_ends_without_close() -> None:
    s = up()
    s.abandon()
    assert s.state is ConnectionState.CLOSED
    assert s.outgoing() == []
    assert any(isinstance(e, TransportDropped) for e in s.events())


def test_start_connect_while_connecting_gives_the_fallback_a_deadline_of_its_own() -> None:
    s = ClientSession()
    s.start_connect(0)
    s.events()
    s.start_connect(4)  # the WebSocket failed fast at t=4; Comet is tried next
    assert s.state is ConnectionState.CONNECTING and s.events() == []
    assert s.next_deadline() == pytest.approx(14)
    s.tick(13)
    assert s.state is ConnectionState.CONNECTING
    s.tick(14)
    assert s.state is ConnectionState.DISCONNECTED


def test_activity_without_a_frame_postpones_the_idle_timeout() -> None:
    s = up(now=0)
    s.activity(20)  # an empty Comet recv completed (RTN23)
    assert s.next_deadline() == pytest.approx(20 + 15 + 10)
    s.tick(30)
    assert s.state is ConnectionState.CONNECTED


def test_a_late_attached_completes_a_timed_out_attach_and_its_messages_are_delivered() -> None:
    """The server's ATTACHED after our attach timed out (SUSPENDED) completes it, as ably-js does;
    ignoring it while storing the serials of discarded messages was a silent gap (bench/chaos)."""
    s = up()
    s.attach(0, "a")
    s.handle(9, ProtocolMessage(action=Action.HEARTBEAT))
    s.tick(10)
    assert s.channel("a").state is ChannelState.SUSPENDED
    s.handle(10.5, attached("a", "e:4", resumed=True))
    assert s.channel("a").state is ChannelState.ATTACHED
    s.events()
    s.handle(
        10.6,
        ProtocolMessage(action=Action.MESSAGE, channel="a", channel_serial="e:5", messages=[{"data": 5}]),
    )
    assert [e.message["data"] for e in s.events() if isinstance(e, MessageReceived)] == [5]


def test_a_suspended_channel_retries_its_attach_after_the_channel_retry_delay() -> None:
    s = up(ClientSession(rng=random.Random(1), config=SessionConfig(channel_retry=15.0)))
    s.attach(0, "a")
    s.outgoing()
    s.handle(9, ProtocolMessage(action=Action.HEARTBEAT))
    s.tick(10)
    assert s.channel("a").state is ChannelState.SUSPENDED
    s.handle(20, ProtocolMessage(action=Action.HEARTBEAT))
    s.tick(20)
    assert s.channel("a").state is ChannelState.SUSPENDED and not sent(s)
    s.handle(25, ProtocolMessage(action=Action.HEARTBEAT))
    s.tick(25)
    assert s.channel("a").state is ChannelState.ATTACHING
    assert [(a, c) for a, c, _, _ in sent(s)] == [(Action.ATTACH, "a")]


def _presence(channel: str, serial: str, *events: dict) -> ProtocolMessage:
    return ProtocolMessage(
        action=Action.PRESENCE, channel=channel, channel_serial=serial, presence=list(events)
    )


def test_rtp17_members_this_connection_entered_are_entered_again_on_a_non_resumed_attach() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:1"))
    s.outgoing()
    s.publish("a", [{"action": 2, "clientId": "me", "data": "hi"}], presence=True)
    s.outgoing()
    s.handle(0, ack(0, 1, [["e:2"]]))
    s.handle(
        0,
        _presence(
            "a", "e:2", {"action": 2, "clientId": "me", "connectionId": "c1", "id": "c1:0:0", "data": "hi"}
        ),
    )
    # Someone else's member, and our member left by the server while we were away (synthesized):
    # neither is ours to re-enter / forget.
    s.handle(0, _presence("a", "e:3", {"action": 2, "clientId": "you", "connectionId": "c9", "id": "c9:0:0"}))
    s.handle(0, _presence("a", "e:4", {"action": 3, "clientId": "me", "connectionId": "c1", "id": "!c1:5:1"}))
    s.events()
    s.handle(1, attached("a", "e:4", resumed=True))  # resumed: nothing to do
    assert s.outgoing() == []
    s.handle(2, attached("a", "e:9", error=ErrorInfo.of(ErrorCode.CONTINUITY_LOST, "lost")))
    [frame] = s.outgoing()
    assert frame.action is Action.PRESENCE and frame.presence == [
        {"action": 2, "clientId": "me", "data": "hi", "id": "c1:0:0"}  # same connection: same id
    ]
    s.handle(2, ack(1, 1, [["e:10"]]))
    assert [
        e for e in s.events() if isinstance(e, ChannelEvent) and e.reason and e.reason.code == 91004
    ] == []

    # After the connection state expired (a new connectionId), the fresh attach re-enters without the id;
    # the server refusing it is reported on the channel as an update with 91004 (RTP17e).
    lose(s, 3)
    s.handle(4, connected("c2", "key-9", error=ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "expired")))
    s.outgoing()
    s.handle(4, attached("a", "e:11"))
    [frame] = s.outgoing()
    assert frame.presence == [{"action": 2, "clientId": "me", "data": "hi"}]
    s.events()
    s.handle(
        5,
        ProtocolMessage(
            action=Action.NACK,
            msg_serial=frame.msg_serial,
            count=1,
            error=ErrorInfo.of(ErrorCode.CAPABILITY_DENIED, "no presence"),
        ),
    )
    [update] = [e for e in s.events() if isinstance(e, ChannelEvent)]
    assert update.update and update.state is ChannelState.ATTACHED and update.reason.code == 91004


def test_rtp17_a_member_this_connection_left_is_not_entered_again() -> None:
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:1"))
    s.outgoing()
    s.handle(0, _presence("a", "e:2", {"action": 2, "clientId": "me", "connectionId": "c1", "id": "c1:0:0"}))
    s.handle(0, _presence("a", "e:3", {"action": 3, "clientId": "me", "connectionId": "c1", "id": "c1:1:0"}))
    s.handle(1, attached("a", "e:9", error=ErrorInfo.of(ErrorCode.CONTINUITY_LOST, "lost")))
    assert s.outgoing() == []


def test_rtp17_a_resumed_channel_on_a_new_connection_still_reenters() -> None:
    # After a failed resume (80008) the channel's own continuity may hold (ATTACHED with RESUMED),
    # but its members were the old connection's: they are entered again under the new one.
    s = up()
    s.attach(0, "a")
    s.handle(0, attached("a", "e:1"))
    s.outgoing()
    s.handle(0, _presence("a", "e:2", {"action": 2, "clientId": "me", "connectionId": "c1", "id": "c1:0:0"}))
    lose(s, 1)
    s.handle(2, connected("c2", "key-9", error=ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "expired")))
    s.outgoing()
    s.handle(2, attached("a", "e:2", resumed=True))
    [frame] = s.outgoing()
    assert frame.action is Action.PRESENCE and frame.presence == [{"action": 2, "clientId": "me"}]

"""Peer-link wire: hello authentication, frame round trips, and hostile bytes (issue 6)."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend import peerwire as W

SECRET = "peer-secret-0123456789abcdef"
NOW = 1_700_000_000_000


def hello_body(**over):
    frame = W.encode_hello(over.pop("secret", SECRET), "fe-a1", over.pop("ts", NOW), b"n" * 12, 9101)
    return W.decode_body(frame[4:])


def test_hello_round_trip():
    hello = W.verify_hello([SECRET], hello_body(), NOW)
    assert (hello.node_id, hello.listen_port) == ("fe-a1", 9101)


def test_hello_with_another_secret_is_refused_but_rotation_accepts_it():
    body = hello_body(secret="an-old-secret-0123456789")
    with pytest.raises(W.PeerProtocolError, match="authenticate"):
        W.verify_hello([SECRET], body, NOW)
    assert W.verify_hello([SECRET, "an-old-secret-0123456789"], body, NOW).node_id == "fe-a1"


def test_stale_or_tampered_hello_is_refused():
    with pytest.raises(W.PeerProtocolError, match="stale"):
        W.verify_hello([SECRET], hello_body(ts=NOW - W.HELLO_MAX_SKEW_MS - 1), NOW)
    body = hello_body()
    body[2] = "fe-b1"  # claim another identity
    with pytest.raises(W.PeerProtocolError):
        W.verify_hello([SECRET], body, NOW)
    body = hello_body()
    body[5] = 9999  # redirect replies elsewhere
    with pytest.raises(W.PeerProtocolError):
        W.verify_hello([SECRET], body, NOW)


@pytest.mark.parametrize(
    "frame",
    [
        W.Request(req_id=7, op="publish", args={"channel": "c"}),
        W.Reply(req_id=7, ok=True, result=["e:1"]),
        W.Push(op="deliver", args={"channel": "c", "entry": [1, 1, 0, {"action": 15}, None, None]}),
    ],
)
def test_frames_round_trip_through_the_reader(frame):
    reader = W.FrameReader()
    data = W.encode(frame) * 2
    reader.feed(data[:3])
    assert reader.frames() == []
    reader.feed(data[3:])
    assert [W.parse(b) for b in reader.frames()] == [frame, frame]


def test_oversized_frame_is_refused_before_it_is_buffered_whole():
    reader = W.FrameReader(max_frame=100)
    reader.feed((101).to_bytes(4, "big") + b"x")
    with pytest.raises(W.PeerProtocolError, match="exceeds"):
        reader.frames()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_reader_raises_only_peer_protocol_error(data):
    reader = W.FrameReader(max_frame=1 << 16)
    reader.feed(len(data).to_bytes(4, "big") + data)
    try:
        for body in reader.frames():
            W.parse(body)
    except W.PeerProtocolError:
        pass


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=8))
def test_fuzz_structured_frames_raise_only_peer_protocol_error(body):
    data = msgpack.packb(body, use_bin_type=True)
    try:
        parsed = W.parse(W.decode_body(data))
    except W.PeerProtocolError:
        return
    assert isinstance(parsed, W.Request | W.Reply | W.Push)
    try:
        W.verify_hello([SECRET], body, NOW)
    except W.PeerProtocolError:
        pass


def test_a_request_arriving_after_its_deadline_is_never_executed() -> None:
    """A partition can hold a request in a TCP buffer until it heals; by then its caller has retried,
    so executing it could number a publish twice (bench/chaos). It is dropped and counted."""
    from frontend.clock import wall_ms as _wall_ms
    from frontend.peer import DEADLINE_ARG, PeerBus

    seen: list[str] = []
    bus = PeerBus(
        "fe-a1",
        ["s" * 32],
        on_request=lambda peer, op, reply: seen.append(op.OP),
        on_push=lambda peer, op: None,
    )
    pub = {"channel": "ch", "conn": "c", "msg_serial": 0, "messages": [{"data": 1}], "envelope": {}}
    bus._dispatch("fe-b1", W.Request(req_id=1, op="publish", args={**pub, DEADLINE_ARG: _wall_ms() - 25_000}))
    assert seen == [] and bus.stale_requests == 1
    bus._dispatch("fe-b1", W.Request(req_id=2, op="publish", args={**pub, DEADLINE_ARG: _wall_ms() + 3_000}))
    bus._dispatch("fe-b1", W.Request(req_id=3, op="attach", args={"channel": "ch"}))  # no deadline
    assert seen == ["publish", "attach"] and bus.stale_requests == 1
    # A request that does not decode is counted and dropped, never handed to the node.
    bus._dispatch("fe-b1", W.Request(req_id=4, op="attach", args={}))
    bus._dispatch("fe-b1", W.Push(op="deliver", args={"channel": "ch", "entry": "x"}))
    assert seen == ["publish", "attach"] and bus.bad_ops == 2


async def test_a_request_times_out_at_its_own_deadline() -> None:
    """The sweeper sleeps until the earliest deadline; a request with an earlier deadline than every
    pending one wakes it, so that request fails on time while the longer one still waits."""
    from collections.abc import Callable

    import trio
    import trio.testing

    from frontend import peerops as O
    from frontend.peer import PeerBus

    async def silent(stream: trio.SocketStream) -> None:
        async for _ in stream:  # reads the hello and the requests, never answers
            pass

    answers: dict[str, tuple[bool, object, float]] = {}
    short_answered = trio.Event()
    bus = PeerBus("fe-a1", ["s" * 32], on_request=lambda peer, op, reply: None, on_push=lambda peer, op: None)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, silent, listeners)
            await nursery.start(bus.serve, "127.0.0.1", 0)
            bus.set_addresses({"fe-b1": ("127.0.0.1", port)})
            start = trio.current_time()

            def answer(name: str) -> Callable[[bool, object], None]:
                def record(ok: bool, res: object) -> None:
                    answers[name] = (ok, res, trio.current_time() - start)
                    if name == "short":
                        short_answered.set()

                return record

            bus.request("fe-b1", O.LogFetch(channel="ch"), answer("long"), timeout_s=5.0)
            await trio.testing.wait_all_tasks_blocked()  # the sweeper is asleep until 5 s from now
            bus.request("fe-b1", O.LogFetch(channel="ch"), answer("short"), timeout_s=0.3)
            await short_answered.wait()
            ok, res, after = answers["short"]
            assert not ok and isinstance(res, O.Refused) and res.code is O.Refusal.LOST
            assert 0.3 <= after < 1.5 and "long" not in answers
            nursery.cancel_scope.cancel()

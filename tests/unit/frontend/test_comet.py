"""The Comet core: path parsing, framing, the transport's outbox and recv bookkeeping, key lookup."""

from __future__ import annotations

import json
import random

import pytest

from frontend.comet import (
    EMPTY,
    CometPath,
    CometRegistry,
    CometTransport,
    array_body,
    error_body,
    parse_path,
)
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from kernel.errors import ErrorCode, ErrorInfo
from kernel.keys import ConnectionKey
from kernel.protocol import Action, Encoded, ProtocolMessage

KEY = "app.key:secret-secret-secret"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/comet/connect", CometPath(op="connect")),
        ("/comet/fe1.fe2.abc-_D.3.mAc_-x/recv", CometPath(op="recv", key="fe1.fe2.abc-_D.3.mAc_-x")),
        ("/comet/k/send", CometPath(op="send", key="k")),
        ("/comet/k/close", CometPath(op="close", key="k")),
        ("/comet/k/disconnect", CometPath(op="disconnect", key="k")),
        ("/comet/a%2Eb/recv", CometPath(op="recv", key="a.b")),
        ("/comet/k/other", None),
        ("/comet//recv", None),
        ("/comet/a/b/recv", None),
        ("/comet/", None),
        ("/cometx/k/recv", None),
    ],
)
def test_parse_path(path: str, expected: CometPath | None) -> None:
    assert parse_path(path) == expected


def test_bodies_are_arrays_ending_in_newline() -> None:
    assert array_body([]) == EMPTY == b"[]\n"
    assert array_body([b'{"action":0}', b'{"action":4}']) == b'[{"action":0},{"action":4}]\n'
    body = error_body(Action.DISCONNECTED, ErrorInfo.of(ErrorCode.CONNECTION_EXPIRED, "gone"))
    assert body.endswith(b"]\n")
    (msg,) = json.loads(body)
    assert msg["action"] == 6 and msg["error"]["code"] == 80008 and msg["error"]["statusCode"] == 400


def _frame(n: int) -> Encoded:
    return Encoded.of(ProtocolMessage(action=Action.MESSAGE, channel="c", id=str(n)))


def test_outbox_is_bounded_and_force_bypasses() -> None:
    t = CometTransport(None, 2, 0)
    assert t.send(_frame(0)) and t.send(_frame(1))
    assert not t.send(_frame(2))  # full: the node cuts it as a slow consumer
    assert t.send(_frame(3), force=True)  # a replay
    body = t.take()
    assert body is not None
    assert [m["id"] for m in json.loads(body)] == ["0", "1", "3"]
    assert t.take() is None


def test_close_with_final_replaces_the_queue_and_swallows_later_frames() -> None:
    t = CometTransport(None, 10, 0)
    t.send(_frame(0))
    t.close(Encoded.of(ProtocolMessage(action=Action.DISCONNECTED)))
    assert t.send(_frame(1))  # swallowed
    assert t.ready()
    assert json.loads(t.take() or b"") == [{"action": 6}]


def test_a_new_recv_supersedes_the_pending_one_and_the_stale_clock_runs_between_recvs() -> None:
    t = CometTransport(None, 10, 1_000)
    assert t.stale_at(500) == 1_500  # after connect, before the first recv
    first = t.begin_recv()
    assert t.stale_at(500) is None
    second = t.begin_recv()
    assert t.recv_token is second
    t.end_recv(first, 2_000)  # the superseded recv ending changes nothing
    assert t.stale_at(500) is None
    t.end_recv(second, 3_000)
    assert t.stale_at(500) == 3_500


def _node(**config: object) -> FrontendNode:
    cfg = FrontendConfig(dev=True, comet_transport_timeout_ms=500, **config)  # type: ignore[arg-type]
    return FrontendNode(cfg, rng=random.Random(1))


def test_lookup_accepts_only_the_current_key_of_a_live_comet_transport() -> None:
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None and reg.lookup(s.key) is t
    assert json.loads(t.take() or b"")[0]["action"] == Action.CONNECTED
    forged = s.key[:-1] + ("A" if s.key[-1] != "A" else "B")
    bad = reg.lookup(forged)
    assert isinstance(bad, ErrorInfo) and bad.code == ErrorCode.INVALID_CONNECTION_KEY
    other = node.signer.sign(
        ConnectionKey(owner="zz", secondary=None, connection_id=s.connection_id, epoch=1)
    )
    away = reg.lookup(other)
    assert isinstance(away, ErrorInfo) and away.code == ErrorCode.DISCONNECTED
    unknown = node.signer.sign(
        ConnectionKey(owner=node.node_id, secondary=None, connection_id="nobody", epoch=1)
    )
    gone = reg.lookup(unknown)
    assert isinstance(gone, ErrorInfo) and gone.code == ErrorCode.CONNECTION_EXPIRED


def test_a_request_naming_a_takeovers_new_key_confirms_it() -> None:
    # A taker gives a connection back to a client resuming elsewhere with the key its takeover
    # replaced only while the client never used the new key (ownership._hand_over, chaos seed
    # 1851702012): a comet recv or send naming the new key proves the CONNECTED reached the client.
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    s.replaced_key, s.key_confirmed = "an older key", False
    assert reg.lookup(s.key) is t and s.key_confirmed


def test_no_recv_for_the_timeout_loses_the_transport_but_keeps_the_session() -> None:
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    reg.expire(499)
    assert node.outlets.get(s.connection_id) is t
    assert reg.next_deadline() == 500
    reg.expire(500)
    assert s.connection_id not in node.outlets and s.connection_id not in reg.transports
    assert node.sessions[s.connection_id].state.value == "detached"
    gone = reg.lookup(s.key)
    assert isinstance(gone, ErrorInfo) and gone.code == ErrorCode.DISCONNECTED
    # A resume over Comet binds a new transport to the same session.
    t2, s2 = reg.open(600, {"key": KEY, "resume": s.key})
    assert s2 is s and reg.lookup(s.key) is t2


def test_bad_send_body_answers_error_and_keeps_the_session() -> None:
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    t.take()
    (msg,) = json.loads(reg.handle_send(10, t, b"{not json"))
    assert msg["action"] == Action.ERROR and msg["error"]["code"] == 40000
    assert s.connection_id not in node.outlets and s.connection_id in node.sessions


def test_send_answers_empty_and_frames_wait_for_the_recv() -> None:
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    t.take()
    assert reg.handle_send(10, t, b'[{"action":0,"id":"ping"}]') == EMPTY
    assert json.loads(reg.deliver(t)) == [{"action": 0, "id": "ping"}]


def test_close_answers_closed_and_disposes() -> None:
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    t.take()
    assert json.loads(reg.handle_close(10, t))[0]["action"] == Action.CLOSED
    assert s.connection_id not in node.sessions
    gone = reg.lookup(s.key)
    assert isinstance(gone, ErrorInfo) and gone.code == ErrorCode.CONNECTION_EXPIRED


def test_a_refused_connect_answers_error_in_band() -> None:
    node = FrontendNode(FrontendConfig(), rng=random.Random(1))  # no keys: every key refused
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is None and not reg.transports
    (msg,) = json.loads(reg.deliver(t))
    assert msg["action"] == Action.ERROR


# --- fuzzing: Comet request bodies (issue 6) -----------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kernel import protocol as P  # noqa: E402
from kernel.errors import RemoteProtocolError  # noqa: E402
from tests.unit.kernel.test_protocol import json_values, pm_like  # noqa: E402

_json_values = json_values
_pm_like = pm_like
_bodies = (
    st.binary(max_size=400)
    | st.lists(_pm_like, max_size=4).map(lambda pms: json.dumps(pms).encode())
    | _pm_like.map(lambda pm: json.dumps(pm).encode())
    | _json_values.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_fuzz_comet_body_decoder_raises_only_its_protocol_error(body: bytes) -> None:
    try:
        pms = P.decode_json_array(body, max_size=1 << 20)
    except RemoteProtocolError as exc:
        assert exc.code is ErrorCode.BAD_REQUEST
        return
    assert all(isinstance(pm.action, Action) for pm in pms)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_bodies, min_size=1, max_size=4))
def test_fuzz_comet_send_answers_in_band_and_never_raises(bodies: list[bytes]) -> None:
    """Any POST /send body gets a JSON-array answer (maybe an in-band ERROR); the registry stays
    consistent and the node keeps the session (detached at worst, never lost)."""
    node = _node()
    reg = CometRegistry(node)
    t, s = reg.open(0, {"key": KEY})
    assert s is not None
    t.take()
    for i, body in enumerate(bodies):
        answer = reg.handle_send(10 + i, t, body)
        assert answer == EMPTY or isinstance(json.loads(answer), list)
    assert s.connection_id in node.sessions or s.terminal


# --- requests that arrive late (chaos seeds 1490494864 and 459897038) -------------------------------

import trio  # noqa: E402

from frontend.comet import CometService  # noqa: E402


async def _call(service: CometService, op: str, conn_key: str | None, sent: tuple[str, int],
                body: bytes = b"", **params: str) -> list[dict[str, object]]:
    method = b"POST" if op == "send" else b"GET"
    with trio.fail_after(5):
        answer = await service.handle(method, CometPath(op=op, key=conn_key), params, body, sent)
    return json.loads(answer)


async def _resumed_on_a_second_transport(service: CometService) -> tuple[str, CometTransport]:
    """A Comet connection (connect forwarded by rt1 at 100 us) resumed on this same frontend (at
    500 us): the key stays the same, only the transport is new."""
    (connected,) = await _call(service, "connect", None, ("rt1", 100), key=KEY)
    key = connected["connectionDetails"]["connectionKey"]  # type: ignore[index]
    assert isinstance(key, str)
    (resumed,) = await _call(service, "connect", None, ("rt1", 500), key=KEY, resume=key)
    assert resumed["action"] == Action.CONNECTED and resumed["connectionId"] == connected["connectionId"]
    t2 = service.registry.lookup(key)
    assert isinstance(t2, CometTransport)
    return key, t2


async def test_a_recv_forwarded_before_the_transport_was_opened_takes_none_of_its_frames() -> None:
    """Seed 1490494864: a recv of sub17's previous transport, held in a partition's TCP buffers, reached
    fe-b2 after the client had resumed there with the same key. Served, it took the frames queued
    for the live transport (984..986 of chaos:0) and its answer reached nobody: a silent gap."""
    service = CometService(_node())
    key, t2 = await _resumed_on_a_second_transport(service)
    assert await _call(service, "send", key, ("rt1", 600), b'[{"action":0,"id":"ping"}]') == []
    (late,) = await _call(service, "recv", key, ("rt1", 300))  # the old transport's recv, late
    assert late["action"] == Action.DISCONNECTED and late["error"]["code"] == ErrorCode.DISCONNECTED  # type: ignore[index]
    assert service.registry.lookup(key) is t2 and t2.queued == 1  # left alone, its frame kept
    assert await _call(service, "recv", key, ("rt1", 700)) == [{"action": 0, "id": "ping"}]


async def test_a_send_forwarded_before_the_transport_was_opened_is_not_applied() -> None:
    """Seed 459897038: a send of the previous transport arriving after the resume put its publish
    ahead of the client's re-sent earlier ones in the ACK order; the client then took the ACK of
    the later msgSerial as the answer to its earlier publishes, with no serials."""
    service = CometService(_node())
    key, t2 = await _resumed_on_a_second_transport(service)
    (late,) = await _call(service, "send", key, ("rt1", 400), b'[{"action":0,"id":"late"}]')
    assert late["action"] == Action.DISCONNECTED
    assert t2.queued == 0  # not handled: no answer to it was queued
    assert await _call(service, "send", key, ("rt1", 600), b'[{"action":0,"id":"own"}]') == []
    assert await _call(service, "recv", key, ("rt1", 700)) == [{"action": 0, "id": "own"}]


async def test_a_recv_the_router_sent_again_is_refused_so_the_client_resumes() -> None:
    """A router retries a request on a fresh pooled connection when the first failed before any
    answer byte, with the same stamp; if the first copy was answered (its frames went nowhere) the
    second must not be served as a new recv."""
    service = CometService(_node())
    key, _t2 = await _resumed_on_a_second_transport(service)
    assert await _call(service, "send", key, ("rt1", 600), b'[{"action":0,"id":"a"}]') == []
    assert await _call(service, "recv", key, ("rt1", 700)) == [{"action": 0, "id": "a"}]
    (again,) = await _call(service, "recv", key, ("rt1", 700))
    assert again["action"] == Action.DISCONNECTED
    assert await _call(service, "send", key, ("rt1", 800), b'[{"action":0,"id":"b"}]') == []
    assert await _call(service, "recv", key, ("rt1", 900)) == [{"action": 0, "id": "b"}]


def test_two_routers_clocks_are_compared_with_slack_and_unstamped_requests_are_served() -> None:
    t = CometTransport(None, 10, 0)
    t.opened = ("rt1", 5_000_000)
    assert t.late("recv", None) is None  # straight from a client, no router
    assert t.late("recv", ("rt2", 4_500_000)) is None  # another router's clock may lag
    assert t.late("send", ("rt2", 3_000_000)) is not None  # beyond the slack
    assert t.late("send", ("rt1", 4_999_999)) is not None  # one router's clock: exact
    assert t.late("disconnect", ("rt1", 4_000_000)) is not None  # a late disconnect loses nothing

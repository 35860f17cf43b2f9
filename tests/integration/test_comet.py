"""Comet over raw HTTP against one frontend process (PROTOCOL.md 6.2)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kernel.protocol import Action, ProtocolMessage
from tests.support.comet import CometClient, HttpLane
from tests.support.procs import API_KEY, FrontendProcess, run_frontend
from tests.support.raw import raw_connect
from tests.support.streams import wait_until_async

pytestmark = pytest.mark.integration

AUTH = {"key": API_KEY}
# Short long-polls and a short no-recv window so that every path runs in seconds.
CONFIG = {"max_idle_interval_ms": 1_000, "connection_state_ttl_ms": 30_000, "comet_transport_timeout_ms": 600}


@pytest.fixture
async def fe(tmp_path: Path) -> AsyncIterator[FrontendProcess]:
    async with run_frontend(tmp_path / "fe", **CONFIG) as proc:
        yield proc


@pytest.fixture
async def comet(fe: FrontendProcess) -> AsyncIterator[CometClient]:
    c = CometClient("127.0.0.1", fe.port, AUTH)
    yield c
    await c.aclose()


def publish(channel: str, serial: int, n: int) -> dict[str, Any]:
    return {"action": 15, "channel": channel, "msgSerial": serial, "messages": [{"name": "n", "data": n}]}


async def _is_detached(fe: FrontendProcess, conn_id: str) -> bool:
    return await describe(fe, conn_id) == "detached"


async def describe(fe: FrontendProcess, conn_id: str) -> str:
    _, body = await fe.get(f"/debug/connections/{conn_id}")
    return str(json.loads(body)["state"])


async def test_connect_answers_connected_with_cors_and_a_newline(fe: FrontendProcess) -> None:
    with trio.fail_after(10):
        lane = HttpLane("127.0.0.1", fe.port)
        res = await lane.request(
            "GET", f"/comet/connect?key={API_KEY}&heartbeats=true&v=6&stream=false&rnd=1"
        )
        await lane.aclose()
    assert res.status == 200
    assert res.headers[b"content-type"] == b"application/json"
    assert res.headers[b"access-control-allow-origin"] == b"*"
    assert res.body.endswith(b"]\n")
    (connected,) = res.messages()
    assert connected["action"] == Action.CONNECTED
    assert connected["connectionDetails"]["connectionKey"]
    assert connected["connectionDetails"]["maxIdleInterval"] == 1_000


async def test_preflight_for_a_cross_origin_send(fe: FrontendProcess) -> None:
    with trio.fail_after(10):
        lane = HttpLane("127.0.0.1", fe.port)
        res = await lane.request(
            "OPTIONS",
            "/comet/k/send",
            headers=[("origin", "http://elsewhere"), ("access-control-request-method", "POST")],
        )
        await lane.aclose()
    assert res.status == 204
    assert res.headers[b"access-control-allow-origin"] == b"*"
    assert b"POST" in res.headers[b"access-control-allow-methods"]
    assert b"content-type" in res.headers[b"access-control-allow-headers"]
    assert b"x-ably-errorcode" in res.headers[b"access-control-expose-headers"]


async def test_attach_publish_ack_and_echo_arrive_on_recv(comet: CometClient) -> None:
    with trio.fail_after(10):
        await comet.connect()
        assert await comet.send({"action": 10, "channel": "c"}, publish("c", 0, 1), publish("c", 1, 2)) == []
        acks: list[int] = []
        got: list[int] = []
        while len(acks) < 2 or len(got) < 2:
            for m in await comet.recv():
                if m["action"] == Action.ACK:
                    acks += range(m["msgSerial"], m["msgSerial"] + m["count"])
                elif m["action"] == Action.MESSAGE:
                    got += [x["data"] for x in m["messages"]]
    assert acks == [0, 1] and got == [1, 2]
    attached = [m for m in comet.received if m["action"] == Action.ATTACHED]
    assert attached and comet.received.index(attached[0]) < comet.received.index(
        next(m for m in comet.received if m["action"] == Action.MESSAGE)
    )


async def test_idle_recv_answers_a_heartbeat_and_a_newer_recv_supersedes(
    fe: FrontendProcess, comet: CometClient
) -> None:
    with trio.fail_after(10):
        await comet.connect()
        assert await comet.recv() == [{"action": 0}]  # after maxIdleInterval
        other = HttpLane("127.0.0.1", fe.port)
        result: list[Any] = []

        async def first() -> None:
            result.append(await comet.recv())

        recvs = 'continuity_comet_requests_total{kind="recv"}'
        before = (await fe.metrics()).get(recvs, 0)

        async def first_is_pending() -> bool:
            return (await fe.metrics()).get(recvs, 0) > before

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await wait_until_async(first_is_pending)  # the frontend has taken the first recv
            res = await other.request("GET", f"/comet/{comet.key}/recv?key={API_KEY}")
        await other.aclose()
    assert result == [[]]  # the superseded recv answers []
    assert res.messages() == [{"action": 0}]


async def test_bad_body_is_an_in_band_error_and_the_session_is_kept(
    fe: FrontendProcess, comet: CometClient
) -> None:
    with trio.fail_after(10):
        await comet.connect()
        conn_id, key = comet.connection_id, comet.key
        (err,) = await comet.send(raw=b'[{"action": "nope"')
        assert err["action"] == Action.ERROR and err["error"]["code"] == 40000
        assert conn_id is not None
        assert await describe(fe, conn_id) == "detached"
        fresh = CometClient("127.0.0.1", fe.port, AUTH)
        (connected,) = await fresh.connect(resume=key or "")
        await fresh.aclose()
    assert connected["connectionId"] == conn_id and "error" not in connected


async def test_stale_and_forged_keys_are_answered_in_band(fe: FrontendProcess, comet: CometClient) -> None:
    with trio.fail_after(10):
        await comet.connect()
        key = comet.key or ""
        forged = key[:-1] + ("A" if key[-1] != "A" else "B")
        (bad,) = await comet.recv(key=forged)
        assert bad["action"] == Action.DISCONNECTED and bad["error"]["code"] == 80018
        (bad,) = await comet.get("send", key=forged)
        assert bad["action"] == Action.DISCONNECTED
        assert (await comet.get("close"))[0]["action"] == Action.CLOSED
        (gone,) = await comet.recv()
    assert gone["action"] == Action.DISCONNECTED and gone["error"]["code"] == 80008


async def test_no_recv_detaches_the_transport_then_resume_replays(
    fe: FrontendProcess, comet: CometClient
) -> None:
    with trio.fail_after(15):
        await comet.connect()
        conn_id = comet.connection_id
        assert conn_id is not None
        await comet.send({"action": 10, "channel": "r"})
        attached = await comet.recv_until(lambda m: m["action"] == Action.ATTACHED)
        serial = attached["channelSerial"]
        # The client stops polling: the transport is lost, the session kept.
        await wait_until_async(lambda: _is_detached(fe, conn_id))
        metrics = await fe.metrics()
        assert metrics["continuity_comet_transports_lost_total"] >= 1
        (gone,) = await comet.recv()
        assert gone["action"] == Action.DISCONNECTED
        # Published while away, by another connection.
        pub = CometClient("127.0.0.1", fe.port, AUTH)
        await pub.connect()
        await pub.send(publish("r", 0, 7))
        await pub.recv_until(lambda m: m["action"] == Action.ACK)
        await pub.aclose()
        # Resume over Comet: same id; the re-ATTACH with the old channelSerial replays.
        (connected,) = await comet.connect(resume=comet.key or "")
        assert connected["connectionId"] == conn_id and "error" not in connected
        await comet.send({"action": 10, "channel": "r", "channelSerial": serial})
        msg = await comet.recv_until(lambda m: m["action"] == Action.MESSAGE)
    assert msg["messages"][0]["data"] == 7
    reattached = [m for m in comet.received if m["action"] == Action.ATTACHED][-1]
    assert reattached["flags"] & 4  # RESUMED


async def test_disconnect_keeps_state(fe: FrontendProcess, comet: CometClient) -> None:
    with trio.fail_after(10):
        await comet.connect()
        conn_id = comet.connection_id
        assert conn_id is not None
        assert await comet.get("disconnect") == []
        assert await describe(fe, conn_id) == "detached"
        (connected,) = await comet.connect(resume=comet.key or "")
    assert connected["connectionId"] == conn_id


async def test_websocket_resumes_over_comet_and_back(fe: FrontendProcess) -> None:
    with trio.fail_after(15):
        async with raw_connect(f"ws://127.0.0.1:{fe.port}", key=API_KEY, format="json") as ws:
            connected = await ws.recv_action(Action.CONNECTED)
            conn_id = connected.connection_id
            key = (connected.connection_details or {})["connectionKey"]
            await ws.send(ProtocolMessage(action=Action.ATTACH, channel="x"))
            attached = await ws.recv_action(Action.ATTACHED)
        comet = CometClient("127.0.0.1", fe.port, AUTH)
        (c,) = await comet.connect(resume=key)
        assert c["connectionId"] == conn_id
        await comet.send({"action": 10, "channel": "x", "channelSerial": attached.channel_serial})
        reattached = await comet.recv_until(lambda m: m["action"] == Action.ATTACHED)
        assert reattached["flags"] & 4
        await comet.send(publish("x", 0, 42))
        await comet.recv_until(lambda m: m["action"] == Action.ACK)
        serial = reattached["channelSerial"]
        async with raw_connect(
            f"ws://127.0.0.1:{fe.port}", key=API_KEY, format="json", resume=comet.key or ""
        ) as ws:
            back = await ws.recv_action(Action.CONNECTED)
            assert back.connection_id == conn_id and back.error is None
            # The Comet transport was replaced: its next recv is told to go.
            (gone,) = await comet.recv()
            assert gone["action"] == Action.DISCONNECTED
            await ws.send(ProtocolMessage(action=Action.ATTACH, channel="x", channel_serial=serial))
            again = await ws.recv_action(Action.ATTACHED)
            assert again.flags & 4
            msg = await ws.recv_action(Action.MESSAGE)
        await comet.aclose()
    assert msg.messages and msg.messages[0]["data"] == 42


async def test_comet_requests_are_counted(fe: FrontendProcess, comet: CometClient) -> None:
    with trio.fail_after(10):
        await comet.connect()
        await comet.send({"action": 0})
        await comet.get("close")
        metrics = await fe.metrics()
    for kind in ("connect", "send", "close"):
        assert metrics[f'continuity_comet_requests_total{{kind="{kind}"}}'] >= 1

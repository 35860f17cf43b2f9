"""Basic pub/sub through the tunnel, in both wire formats."""

from __future__ import annotations

import pytest
import trio

import continuity
from kernel.protocol import Action, ProtocolMessage
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.raw import raw_connect
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_publish_subscribe_ack_serials(frontend: FrontendProcess, tunnel: Tunnel, fmt: str) -> None:
    with trio.fail_after(15):
        async with continuity.connect(tunnel.url, key=API_KEY, format=fmt) as conn:  # type: ignore[arg-type]
            assert conn.id and conn.key
            ch = conn.channel("smoke")
            async with ch.subscribe() as sub:
                serials = await ch.publish("greeting", {"hello": "world"})
                assert len(serials) == 1 and serials[0] is not None
                msg = await sub.receive()
                assert msg.name == "greeting" and msg.data == {"hello": "world"}
                assert msg.serial == serials[0] and msg.channel_serial == serials[0]
                assert msg.connection_id == conn.id and msg.id == f"{conn.id}:0:0"
                binary = await ch.publish("bin", b"\x00\xff")
                msg = await sub.receive()
                assert msg.data == b"\x00\xff" and msg.serial == binary[0]
            rtt = await conn.ping()
            assert rtt >= 0


async def test_bad_key_fails_the_connection_in_band(frontend: FrontendProcess) -> None:
    with trio.fail_after(15), pytest.raises(continuity.ConnectionFailedError) as info:
        async with continuity.connect(frontend.url, key="app.key:wrong-secret"):
            pass
    assert info.value.code is not None and 40100 <= info.value.code < 40200


async def test_nack_raises_publish_error_with_the_ably_code(frontend: FrontendProcess) -> None:
    """Over the advertised maxMessageSize the SDK refuses with 40009 before sending (as ably-js does),
    and the connection carries on; the server NACKs one that gets there anyway."""
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as conn:
            assert conn.details["maxMessageSize"] == 65_536
            ch = conn.channel("big")
            with pytest.raises(continuity.PublishError) as info:
                await ch.publish("huge", "x" * 70_000)
            assert info.value.code == 40009 and "refused before sending" in str(info.value)
            assert conn.state is continuity.ConnectionState.CONNECTED and conn.transports_opened == 1
            assert (await ch.publish("small", "ok"))[0] is not None  # the connection carries on
            nacks = (await frontend.metrics()).get('continuity_nacks_total{code="40009"}', 0)
            assert nacks == 0  # never sent
        async with raw_connect(frontend.url, key=API_KEY) as raw:
            await raw.recv_action(Action.CONNECTED)
            await raw.send(ProtocolMessage(action=Action.MESSAGE, channel="big", msg_serial=0,
                                           messages=[{"name": "huge", "data": "x" * 70_000}]))
            nack = await raw.recv_action(Action.NACK)
            assert nack.error is not None and nack.error.code == 40009

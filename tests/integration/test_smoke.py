"""Basic pub/sub through the tunnel, in both wire formats."""

from __future__ import annotations

import pytest
import trio

import continuity
from tests.support.procs import API_KEY, FrontendProcess
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
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as conn:
            ch = conn.channel("big")
            with pytest.raises(continuity.PublishError) as info:
                await ch.publish("huge", "x" * 70_000)
            assert info.value.code == 40009
            assert (await ch.publish("small", "ok"))[0] is not None  # the connection carries on

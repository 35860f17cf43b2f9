"""Basic pub/sub through the tunnel, in both wire formats."""

from __future__ import annotations

import pytest
import trio

import client
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_publish_subscribe_ack_serials(frontend: FrontendProcess, tunnel: Tunnel, fmt: str) -> None:
    with trio.fail_after(15):
        async with client.connect(tunnel.url, key=API_KEY, format=fmt) as conn:  # type: ignore[arg-type]
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

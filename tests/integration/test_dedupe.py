"""Re-sent publishes (same connection and msgSerial) are re-ACKed with the first serials, never duplicated."""

from __future__ import annotations

import pytest
import trio

import continuity
from kernel.protocol import Action, ProtocolMessage
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.raw import raw_connect
from tests.support.streams import FAST_BACKOFF, parse_serial
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_raw_message_sent_twice_is_published_once(frontend: FrontendProcess, fmt: str) -> None:
    with trio.fail_after(15):
        async with continuity.connect(frontend.url, key=API_KEY) as watcher:
            ch = watcher.channel("dup")
            raw_cm = raw_connect(frontend.url, fmt=fmt, key=API_KEY)  # type: ignore[arg-type]
            async with ch.subscribe() as sub, raw_cm as raw:
                await raw.recv_action(Action.CONNECTED)
                publish = ProtocolMessage(
                    action=Action.MESSAGE,
                    channel="dup",
                    msg_serial=0,
                    messages=[{"name": "once", "data": "x"}],
                )
                await raw.send(publish)
                await raw.send(publish)
                first = await raw.recv_action(Action.ACK, Action.NACK)
                second = await raw.recv_action(Action.ACK, Action.NACK)
                assert first.action is second.action is Action.ACK
                assert (first.msg_serial, second.msg_serial) == (0, 0)
                assert first.res == second.res and first.res and first.res[0]["serials"]
                await raw.send(
                    ProtocolMessage(
                        action=Action.MESSAGE,
                        channel="dup",
                        msg_serial=1,
                        messages=[{"name": "next", "data": "y"}],
                    )
                )
                third = await raw.recv_action(Action.ACK, Action.NACK)
                assert third.msg_serial == 1 and third.res
                got = [await sub.receive(), await sub.receive()]
                assert [m.name for m in got] == ["once", "next"]
                assert got[0].serial == first.res[0]["serials"][0]
                assert parse_serial(got[1].serial)[1] == parse_serial(got[0].serial)[1] + 1


async def test_publish_cut_before_its_ack_is_resent_and_not_duplicated(
    frontend: FrontendProcess, tunnel: Tunnel
) -> None:
    with trio.fail_after(20):
        async with (
            continuity.connect(frontend.url, key=API_KEY) as watcher,
            continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF) as publisher,
        ):
            pub_id = publisher.id
            async with watcher.channel("cut-ack").subscribe() as sub:
                result: list[list[str | None]] = []

                async def publish() -> None:
                    result.append(await publisher.channel("cut-ack").publish("only", 1))

                tunnel.hold()  # the server will get the publish; its ACK will not get back
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish)
                    delivered = await sub.receive()  # the server has published it...
                    tunnel.cut(0.3)  # ...and the transport dies before the ACK arrives
                    tunnel.release()
                assert publisher.id == pub_id  # resumed, re-sent with the same msgSerial
                assert publisher.transports_opened >= 2
                assert (await frontend.metrics())["continuity_duplicate_publishes_total"] >= 1
                assert result == [[delivered.serial]]
                serials = await publisher.channel("cut-ack").publish("after", 2)
                after = await sub.receive()
                assert after.name == "after" and after.serial == serials[0]
                assert parse_serial(after.serial)[1] == parse_serial(delivered.serial)[1] + 1

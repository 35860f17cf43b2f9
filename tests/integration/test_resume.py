"""A steady numbered stream survives 1-5 s cuts: same connectionId, every ACKed message once, in order."""

from __future__ import annotations

import pytest
import trio

import continuity
from continuity import ChannelEvent, ConnectionEvent, ConnectionState, Message
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration

CUTS = (1.0, 3.0, 5.0)
PACE = 0.01  # seconds between publishes


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
async def test_numbered_stream_survives_cuts(frontend: FrontendProcess, tunnel: Tunnel, fmt: str) -> None:
    acked: dict[int, str | None] = {}
    received: list[Message] = []
    stop = trio.Event()

    async def publisher(ch: continuity.Channel) -> None:
        n = 0
        while not stop.is_set():
            serials = await ch.publish("n", n)
            acked[n] = serials[0]
            n += 1
            await trio.sleep(PACE)

    async def subscriber(sub: continuity.Subscription) -> None:
        async for msg in sub:
            received.append(msg)

    with trio.fail_after(60):
        async with (
            continuity.connect(tunnel.url, key=API_KEY, format=fmt, backoff=FAST_BACKOFF) as pub_conn,  # type: ignore[arg-type]
            continuity.connect(tunnel.url, key=API_KEY, format=fmt, backoff=FAST_BACKOFF) as sub_conn,  # type: ignore[arg-type]
        ):
            pub_id, sub_id = pub_conn.id, sub_conn.id
            pub_ch, sub_ch = pub_conn.channel("stream"), sub_conn.channel("stream")
            async with sub_ch.subscribe() as sub, trio.open_nursery() as nursery:
                nursery.start_soon(subscriber, sub)
                nursery.start_soon(publisher, pub_ch)
                for duration in CUTS:
                    count = len(acked)
                    await wait_until(lambda c=count: len(acked) >= c + 20)  # type: ignore[misc]
                    tunnel.cut(duration)
                    await trio.sleep(duration)  # the cut itself
                    await sub_conn.wait_for_state(ConnectionState.CONNECTED)
                count = len(acked)
                await wait_until(lambda: len(acked) >= count + 20)
                stop.set()
                last = max(acked)
                await wait_until(lambda: any(m.data == last for m in received))
                nursery.cancel_scope.cancel()

            assert (pub_conn.id, sub_conn.id) == (pub_id, sub_id)
            for conn in (pub_conn, sub_conn):
                connected = [
                    e
                    for e in conn.event_log
                    if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED
                ]
                assert len(connected) == 1 + len(CUTS), connected
                assert all(e.resumed and e.reason is None for e in connected[1:]), connected
            reattached = [e for e in sub_conn.event_log if isinstance(e, ChannelEvent) and e.attached]
            assert len(reattached) == 1 + len(CUTS)
            assert all(e.resumed for e in reattached[1:]), reattached

    numbers = [m.data for m in received]
    assert numbers == list(range(len(numbers))), "duplicate, gap or reorder in the delivered stream"
    assert set(acked) <= set(numbers), f"ACKed but never delivered: {sorted(set(acked) - set(numbers))}"
    assert_contiguous([m.serial for m in received])
    assert all(acked[m.data] == m.serial for m in received if m.data in acked)  # type: ignore[index]
    assert tunnel.connections >= 2 * (1 + len(CUTS))

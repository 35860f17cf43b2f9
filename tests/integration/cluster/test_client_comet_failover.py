"""The client SDK over Comet through a router: kill -9 of the subscriber's owner keeps the
connectionId and loses nothing (the same guarantees as over WebSocket)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from continuity import ConnectionEvent, ConnectionState, Message
from tests.integration.cluster.streams import server_of
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until

pytestmark = pytest.mark.integration

COMET = ["comet"]


async def test_comet_client_survives_kill_9_of_its_owner(tmp_path: Path) -> None:
    acked: dict[int, str | None] = {}
    received: list[Message] = []
    stop = trio.Event()

    async def publish(ch: continuity.Channel) -> None:
        n = 0
        while not stop.is_set():
            acked[n] = (await ch.publish("n", n))[0]
            n += 1
            await trio.sleep(0.01)

    async def receive(sub: continuity.Subscription) -> None:
        async for msg in sub:
            received.append(msg)

    with trio.fail_after(90):
        async with run_cluster(tmp_path) as cluster:
            url = cluster.router_url()
            async with (
                continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF, transports=COMET) as pub_conn,
                continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF, transports=COMET) as sub_conn,
            ):
                sub_id, victim = sub_conn.id, server_of(sub_conn)
                async with sub_conn.channel("comet-feed").subscribe() as sub, trio.open_nursery() as nursery:
                    nursery.start_soon(receive, sub)
                    nursery.start_soon(publish, pub_conn.channel("comet-feed"))
                    await wait_until(lambda: len(acked) >= 30)
                    await cluster.kill(victim)
                    await wait_until(lambda: server_of(sub_conn) != victim
                                     and sub_conn.state is ConnectionState.CONNECTED)
                    count = len(acked)
                    await wait_until(lambda: len(acked) >= count + 30)
                    stop.set()
                    last = max(acked)
                    await wait_until(lambda: any(m.data == last for m in received))
                    nursery.cancel_scope.cancel()
                assert sub_conn.id == sub_id and set(sub_conn.transport_log) == {"comet"}
                connected = [e for e in sub_conn.event_log
                             if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED]
                assert all(e.resumed for e in connected[1:]) and len(connected) >= 2
    numbers = [m.data for m in received]
    assert numbers == list(range(len(numbers))), "duplicate, gap or reorder in the delivered stream"
    assert set(acked) <= set(numbers)
    assert_contiguous([m.serial for m in received])

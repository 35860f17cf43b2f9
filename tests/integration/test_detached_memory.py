"""A detached connection holds cursors, not messages: its state stays flat while 10,000 messages pass."""

from __future__ import annotations

import pytest
import trio

import continuity
from continuity import ConnectionState, Message
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until, wait_until_async
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration

TOTAL = 10_000
BATCH = 100
DETACHED_BYTES = "continuity_detached_state_bytes"
DETACHED = "continuity_connections_detached"


async def test_detached_state_is_flat_while_10000_messages_are_published(
    frontend: FrontendProcess, tunnel: Tunnel
) -> None:
    with trio.fail_after(60):
        async with (
            continuity.connect(frontend.url, key=API_KEY) as publisher,
            continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF) as away,
        ):
            away_id = away.id
            pub_ch = publisher.channel("busy")
            received: list[Message] = []
            async with away.channel("busy").subscribe() as sub:
                await pub_ch.publish("first", -1)
                received.append(await sub.receive())
                tunnel.cut_forever()

                async def detached() -> bool:
                    return (await frontend.metrics()).get(DETACHED, 0) >= 1

                await wait_until_async(detached)
                before = (await frontend.metrics())[DETACHED_BYTES]
                assert before > 0
                for start in range(0, TOTAL, BATCH):
                    await pub_ch.publish(continuity.messages((None, n) for n in range(start, start + BATCH)))
                metrics = await frontend.metrics()
                after = metrics[DETACHED_BYTES]
                assert metrics[DETACHED] == 1
                assert after <= before + 64, f"detached state grew from {before} to {after} bytes"
                assert metrics.get("continuity_retained_messages", 0) >= TOTAL  # the log holds them, once

                # And it was worth keeping: the resume delivers all 10,000, in order.
                tunnel.restore()
                async for msg in sub:
                    received.append(msg)
                    if len(received) == TOTAL + 1:
                        break
            await wait_until(lambda: away.state is ConnectionState.CONNECTED)
            assert away.id == away_id
    assert [m.data for m in received] == [-1, *range(TOTAL)]
    assert_contiguous([m.serial for m in received])

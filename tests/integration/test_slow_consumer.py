"""A subscriber that stops reading is cut as a slow consumer, resumes, and loses nothing.

Two ways to be cut: its outbox fills (``outbox_limit``), or, with an outbox too large to fill, the
publishers stay paused on the backlog it holds for ``slow_consumer_stall_s`` (frontend/outflow.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from continuity import ConnectionState, Message
from tests.support.fixtures import start_tunnel
from tests.support.procs import API_KEY, run_frontend
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until

pytestmark = pytest.mark.integration

PAYLOAD = "x" * 4096
BATCH = 4
MAX_BATCHES = 3_000
LIVELOCK_CUTS = 20


RULES = {
    "outbox_limit": {"outbox_limit": 16},
    "stalled_publishers": {
        "outbox_limit": 1_000_000,
        "publish_backlog_high_bytes": 64 * 1024,
        "publish_backlog_low_bytes": 16 * 1024,
        "slow_consumer_stall_s": 0.5,
    },
}


@pytest.mark.parametrize("rule", sorted(RULES))
async def test_slow_consumer_is_cut_and_resumes_without_loss(
    tmp_path: Path, nursery: trio.Nursery, rule: str
) -> None:
    with trio.fail_after(45):
        async with run_frontend(tmp_path / "fe", max_idle_interval_ms=2_000, **RULES[rule]) as fe:
            tunnel = await start_tunnel(nursery, fe.port)
            async with (
                continuity.connect(fe.url, key=API_KEY) as publisher,
                continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF) as slow,
            ):
                slow_id = slow.id
                pub_ch = publisher.channel("firehose")
                received: list[Message] = []
                async with slow.channel("firehose").subscribe() as sub:
                    tunnel.hold()  # the subscriber's side stops reading its socket
                    published = 0
                    while (await fe.metrics()).get("continuity_slow_consumers_total", 0) < 1:
                        assert published < MAX_BATCHES * BATCH, "never cut as a slow consumer"
                        batch = continuity.messages(
                            (None, {"n": published + i, "pad": PAYLOAD}) for i in range(BATCH)
                        )
                        await pub_ch.publish(batch)
                        published += BATCH
                    tunnel.release()
                    first_cuts = (await fe.metrics()).get("continuity_slow_consumers_total", 0)

                    async def watchdog(done: trio.CancelScope) -> None:
                        # A reading client may be cut again once or twice while it catches up, but
                        # being cut over and over on every resume is a livelock.
                        while True:
                            cuts = (await fe.metrics()).get("continuity_slow_consumers_total", 0)
                            if cuts - first_cuts > LIVELOCK_CUTS:
                                done.cancel()
                                pytest.fail(
                                    f"livelock: {cuts:.0f} slow-consumer cuts, "
                                    f"{len(received)}/{published} delivered"
                                )
                            await trio.sleep(0.1)

                    async with trio.open_nursery() as watch:
                        watch.start_soon(watchdog, watch.cancel_scope)
                        async for msg in sub:
                            received.append(msg)
                            if len(received) == published:
                                break
                        watch.cancel_scope.cancel()
                await wait_until(lambda: slow.state is ConnectionState.CONNECTED)
                assert slow.id == slow_id
                assert slow.transports_opened >= 2
    assert [m.data["n"] for m in received] == list(range(published))  # type: ignore[index]
    assert_contiguous([m.serial for m in received])

"""Connection state expires after connectionStateTtl: resume fails with 80008 and channels get 90003."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from continuity import ChannelEvent, ConnectionEvent, ConnectionState
from tests.support.fixtures import start_tunnel
from tests.support.procs import API_KEY, run_frontend
from tests.support.streams import FAST_BACKOFF, wait_until, wait_until_async

pytestmark = pytest.mark.integration


async def test_ttl_expiry_gives_80008_and_90003(tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(30):
        async with run_frontend(
            tmp_path / "fe",
            connection_state_ttl_ms=1_000,
            max_idle_interval_ms=500,
            channel_log_max_messages=16,
        ) as fe:
            tunnel = await start_tunnel(nursery, fe.port)
            async with (
                continuity.connect(fe.url, key=API_KEY) as publisher,
                continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF, suspended_retry=0.2) as sub,
            ):
                old_id = sub.id
                pub_ch, sub_ch = publisher.channel("ttl"), sub.channel("ttl")
                async with sub_ch.subscribe() as feed:
                    await pub_ch.publish("before", 0)
                    assert (await feed.receive()).data == 0
                    tunnel.cut_forever()
                    # More messages than the log holds, so the subscriber's serial falls out of it.
                    for n in range(1, 41):
                        await pub_ch.publish("during", n)

                    async def expired() -> bool:
                        return (await fe.metrics()).get("continuity_connections_expired_total", 0) >= 1

                    await wait_until_async(expired)
                    tunnel.restore()
                    await wait_until(lambda: sub.state is ConnectionState.CONNECTED and sub.id != old_id)
                    await wait_until(lambda: sub_ch.state is continuity.ChannelState.ATTACHED)

            connected = [
                e
                for e in sub.event_log
                if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED
            ]
            last = connected[-1]
            assert not last.resumed and last.reason is not None and last.reason.code == 80008, last
            assert last.connection_id != old_id
            # The client gave up on its own TTL first and told the application (80002).
            suspended = [
                e
                for e in sub.event_log
                if isinstance(e, ConnectionEvent) and e.state is ConnectionState.SUSPENDED
            ]
            assert suspended and suspended[0].reason is not None and suspended[0].reason.code == 80002
            attached = [e for e in sub.event_log if isinstance(e, ChannelEvent) and e.attached]
            assert not attached[-1].resumed, attached
            assert attached[-1].reason is not None and attached[-1].reason.code == 90003, attached

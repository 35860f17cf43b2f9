"""The trio SDK's presence: enter/update/leave with ACKs, PRESENCE events and the SYNC on attach,
and a resume through a tunnel cut that replays missed presence events and shows no leave."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import continuity
from tests.support.fixtures import start_tunnel
from tests.support.procs import API_KEY, FrontendProcess, run_frontend
from tests.support.streams import FAST_BACKOFF, wait_until_async
from tests.support.tunnel import Tunnel

pytestmark = pytest.mark.integration


async def _next(feed: continuity.Feed[continuity.PresenceEvent]) -> tuple[str, str | None]:
    ev = await feed.receive()
    return ev.action, ev.client_id


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_enter_update_leave_and_sync(frontend: FrontendProcess, fmt: str) -> None:
    with trio.fail_after(20):
        async with (
            continuity.connect(frontend.url, key=API_KEY, format=fmt) as a,  # type: ignore[arg-type]
            continuity.connect(frontend.url, key=API_KEY, format=fmt) as b,  # type: ignore[arg-type]
        ):
            cha, chb = a.channel("pres"), b.channel("pres")
            async with chb.presence_subscribe() as feed:
                await cha.presence("enter", {"x": 1}, client_id="alice")
                assert await _next(feed) == ("enter", "alice")
                await cha.presence("update", "busy", client_id="alice")
                ev = await feed.receive()
                assert (ev.action, ev.data, ev.connection_id) == ("update", "busy", a.id)
                assert ev.id == f"{a.id}:1:0" and ev.channel_serial == chb.serial
                async with continuity.connect(frontend.url, key=API_KEY, format=fmt) as c:  # type: ignore[arg-type]
                    async with c.channel("pres").presence_subscribe() as late:
                        member = await late.receive()
                        assert (member.action, member.client_id, member.data) == ("present", "alice", "busy")
                        assert member.sync and member.sync_last
                with pytest.raises(continuity.PublishError) as info:
                    await cha.presence("enter")  # no clientId anywhere
                assert info.value.code == 40012
                await cha.presence("leave", client_id="alice")
                assert await _next(feed) == ("leave", "alice")


async def test_resume_replays_missed_presence_and_nobody_sees_a_leave(
    frontend: FrontendProcess, tunnel: Tunnel
) -> None:
    with trio.fail_after(30):
        async with (
            continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF) as away,
            continuity.connect(frontend.url, key=API_KEY) as other,
        ):
            ch_away, ch_other = away.channel("pres2"), other.channel("pres2")
            async with ch_away.presence_subscribe() as feed_away, ch_other.presence_subscribe() as feed:
                await ch_away.presence("enter", client_id="traveller")
                assert await _next(feed) == ("enter", "traveller")
                assert await _next(feed_away) == ("enter", "traveller")
                first_id = away.id
                tunnel.cut(1.0)
                await ch_other.presence("enter", client_id="stay")  # while the traveller is away
                assert await _next(feed) == ("enter", "stay")
                # The traveller resumes and gets the enter it missed, replayed from its serial.
                assert await _next(feed_away) == ("enter", "stay")
                assert away.id == first_id
                await ch_away.presence("update", "back", client_id="traveller")
                assert await _next(feed) == ("update", "traveller")  # nothing in between: no leave


async def test_sdk_reenters_its_member_after_its_connection_state_expired(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """RTP17: a client back after its TTL (a new connectionId) is entered again by the SDK; the
    others see its old member leave and one enter under the new connectionId."""
    with trio.fail_after(40):
        async with run_frontend(
            tmp_path / "fe", connection_state_ttl_ms=1_000, max_idle_interval_ms=500, presence_linger_ms=500
        ) as fe:
            tunnel = await start_tunnel(nursery, fe.port)
            async with (
                continuity.connect(
                    tunnel.url, key=API_KEY, backoff=FAST_BACKOFF, suspended_retry=0.2
                ) as away,
                continuity.connect(fe.url, key=API_KEY) as other,
            ):
                ch_away, ch_other = away.channel("rtp17"), other.channel("rtp17")
                async with ch_away.presence_subscribe() as feed_away, ch_other.presence_subscribe() as feed:
                    await ch_away.presence("enter", "here", client_id="traveller")
                    assert await _next(feed) == ("enter", "traveller")
                    assert await _next(feed_away) == ("enter", "traveller")  # the SDK learns its member
                    old_id = away.id
                    tunnel.cut_forever()
                    leave = await feed.receive()
                    assert (leave.action, leave.connection_id) == ("leave", old_id)

                    async def expired() -> bool:
                        return (await fe.metrics()).get("continuity_connections_expired_total", 0) >= 1

                    await wait_until_async(expired)  # its state is gone: the resume will fail (80008)
                    tunnel.restore()
                    enter = await feed.receive()  # entered again by the SDK, nobody asked it to
                    assert (enter.action, enter.client_id, enter.data) == ("enter", "traveller", "here")
                    assert enter.connection_id == away.id != old_id
                    await ch_other.presence("enter", client_id="marker")
                    assert await _next(feed) == ("enter", "marker")  # nothing else in between

"""The trio SDK's presence: enter/update/leave with ACKs, PRESENCE events and the SYNC on attach,
and a resume through a tunnel cut that replays missed presence events and shows no leave."""

from __future__ import annotations

import pytest
import trio

import continuity
from tests.support.procs import API_KEY, FrontendProcess
from tests.support.streams import FAST_BACKOFF
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

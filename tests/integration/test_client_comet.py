"""The client SDK's Comet transport and its WebSocket -> Comet fallback, against a real frontend.

Continuity across transports: a resume may cross from WebSocket to Comet and back with the same
connectionId, and every ACKed message is delivered once and in order (RTN15c6, RTL15b).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import trio

import continuity
from continuity import ChannelEvent, ConnectionEvent, ConnectionState, Message
from continuity.message import Data
from tests.support.procs import API_KEY, FrontendProcess, parse_metrics
from tests.support.streams import FAST_BACKOFF, assert_contiguous, wait_until
from tests.support.tunnel import Tunnel
from tests.support.upgrade_gate import Mode, UpgradeGate

pytestmark = pytest.mark.integration

WS, COMET = "web_socket", "comet"
PACE = 0.01  # seconds between publishes of a numbered stream


class NumberedStream:
    """A publisher of 0, 1, 2, ... on one connection and a subscriber on another."""

    def __init__(self) -> None:
        self.acked: dict[int, str | None] = {}
        self.received: list[Message] = []
        self.stop = trio.Event()
        self.stopped = trio.Event()

    async def publish(self, ch: continuity.Channel) -> None:
        n = 0
        while not self.stop.is_set():
            serials = await ch.publish("n", n)
            self.acked[n] = serials[0]
            n += 1
            await trio.sleep(PACE)
        self.stopped.set()

    async def receive(self, sub: continuity.Subscription) -> None:
        async for msg in sub:
            self.received.append(msg)

    async def more(self, count: int = 20) -> None:
        """Wait until ``count`` more publishes have been ACKed."""
        start = len(self.acked)
        await wait_until(lambda: len(self.acked) >= start + count)

    async def finish(self) -> None:
        """Stop publishing and wait until the last ACKed message has been received."""
        await self.more()
        self.stop.set()
        await self.stopped.wait()  # a publish in flight may still be ACKed: count it too
        last = max(self.acked)
        await wait_until(lambda: any(m.data == last for m in self.received))

    def check(self) -> None:
        """Every ACKed message delivered once, in order, with the serial its ACK gave."""
        numbers = [m.data for m in self.received]
        assert numbers == list(range(len(numbers))), "duplicate, gap or reorder in the delivered stream"
        lost = sorted(set(self.acked) - set(numbers))
        assert not lost, f"ACKed, never delivered: {lost}"
        assert_contiguous([m.serial for m in self.received])
        assert all(self.acked[m.data] == m.serial for m in self.received if m.data in self.acked)  # type: ignore[index]


def connected_events(conn: continuity.Connection) -> list[ConnectionEvent]:
    return [
        e for e in conn.event_log if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED
    ]


def attached_events(conn: continuity.Connection) -> list[ChannelEvent]:
    return [e for e in conn.event_log if isinstance(e, ChannelEvent) and e.attached]


async def reconnected(conn: continuity.Connection, opened: int) -> None:
    """Wait until ``conn`` has opened a transport since it had opened ``opened`` and is CONNECTED."""
    await wait_until(lambda: conn.transports_opened > opened and conn.state is ConnectionState.CONNECTED)


async def switch(conns: Sequence[continuity.Connection], transport: str) -> None:
    """Cut every connection's transport and make it resume over ``transport``; wait until it has."""
    for conn in conns:
        opened = conn.transports_opened
        conn.transports = [transport]
        conn.drop_transport()
        await reconnected(conn, opened)
        assert conn.transport == transport


async def test_comet_pubsub_with_acks(frontend: FrontendProcess) -> None:
    """Connect, attach, publish (ACKed serials), subscribe and close, all over Comet; a WebSocket
    subscriber on the same channel sees the same messages with the same serials."""
    payloads: list[Data] = ["text", b"\x00\xffbinary", {"k": [1, 2]}, 42, None]
    with trio.fail_after(30):
        async with (
            continuity.connect(frontend.url, key=API_KEY, transports=[COMET]) as conn,
            continuity.connect(frontend.url, key=API_KEY, transports=[WS]) as watcher,
        ):
            assert conn.transport == COMET and list(conn.transport_log) == [COMET]
            assert watcher.transport == WS
            ch, wch = conn.channel("comet:pubsub"), watcher.channel("comet:pubsub")
            async with ch.subscribe() as sub, wch.subscribe() as wsub:
                serials = [s for data in payloads for s in await ch.publish("one", data)]
                batch = await ch.publish(continuity.messages([("b", i) for i in range(50)]))
                assert len(batch) == 50 and all(batch)
                serials += batch
                assert all(serials) and len(set(serials)) == len(serials)
                expected = [*payloads, *range(50)]
                for feed in (sub, wsub):
                    got = [await feed.receive() for _ in expected]
                    assert [m.data for m in got] == expected
                    assert [m.serial for m in got] == serials
                    assert_contiguous([m.serial for m in got])
            assert await conn.ping() >= 0
            conn_id = conn.id
            assert conn_id is not None
        assert conn.state is ConnectionState.CLOSED and conn.transports_opened == 1
        _, body = await frontend.get(f"/debug/connections/{conn_id}")
        # CLOSE over /comet/<key>/close disposed of the state (no live or detached session is left).
        assert json.loads(body)["state"] not in ("active", "detached"), body
        metrics = parse_metrics((await frontend.get("/metrics"))[1].decode())
        for kind in ("connect", "recv", "send", "close"):
            assert metrics[f'continuity_comet_requests_total{{kind="{kind}"}}'] >= 1, kind


async def test_comet_idle_connection_stays_up_on_heartbeats(frontend: FrontendProcess) -> None:
    """A quiet Comet connection outlives several maxIdleIntervals (2 s here): each recv answered
    with a HEARTBEAT (or nothing) counts as activity (RTN23), so there is no idle timeout."""
    with trio.fail_after(30):
        async with continuity.connect(frontend.url, key=API_KEY, transports=[COMET]) as conn:
            max_idle = conn.details["maxIdleInterval"] / 1000
            start = trio.current_time()
            async with conn.events() as events:
                with trio.move_on_after(3 * max_idle + 1):
                    async for event in events:
                        raise AssertionError(f"quiet connection changed state: {event}")
            assert trio.current_time() - start >= 3 * max_idle
            assert conn.state is ConnectionState.CONNECTED and conn.transports_opened == 1
            assert await conn.channel("quiet").publish("m", 1)


@pytest.mark.parametrize("first,second", [(WS, COMET), (COMET, WS)], ids=["ws-comet-ws", "comet-ws-comet"])
async def test_transport_switch_keeps_continuity(frontend: FrontendProcess, first: str, second: str) -> None:
    """Publisher and subscriber move from one transport to the other and back mid-stream: the same
    connectionId, resumed attaches, and every ACKed message delivered once and in order."""
    stream = NumberedStream()
    with trio.fail_after(60):
        async with (
            continuity.connect(
                frontend.url, key=API_KEY, backoff=FAST_BACKOFF, transports=[first]
            ) as pub_conn,
            continuity.connect(
                frontend.url, key=API_KEY, backoff=FAST_BACKOFF, transports=[first]
            ) as sub_conn,
        ):
            ids = (pub_conn.id, sub_conn.id)
            async with sub_conn.channel("switch").subscribe() as sub, trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive, sub)
                nursery.start_soon(stream.publish, pub_conn.channel("switch"))
                for transport in (second, first):
                    await stream.more()
                    await switch([sub_conn, pub_conn], transport)
                await stream.finish()
                nursery.cancel_scope.cancel()
            assert (pub_conn.id, sub_conn.id) == ids
            for conn in (pub_conn, sub_conn):
                assert list(conn.transport_log) == [first, second, first]
                connected = connected_events(conn)
                assert len(connected) == 3 and all(e.resumed and e.reason is None for e in connected[1:])
            reattached = attached_events(sub_conn)
            assert len(reattached) == 3 and all(e.resumed for e in reattached[1:]), reattached
    stream.check()


async def test_comet_resume_through_cuts(frontend: FrontendProcess, tunnel: Tunnel) -> None:
    """Comet behind a TCP cut (RST to both ends, new connections reset for the cut's length):
    each client resumes over Comet with the same connectionId and nothing is lost or repeated."""
    stream = NumberedStream()
    cuts = (1.0, 3.0)
    with trio.fail_after(60):
        async with (
            continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF, transports=[COMET]) as pub_conn,
            continuity.connect(tunnel.url, key=API_KEY, backoff=FAST_BACKOFF, transports=[COMET]) as sub_conn,
        ):
            ids = (pub_conn.id, sub_conn.id)
            async with sub_conn.channel("cut").subscribe() as sub, trio.open_nursery() as nursery:
                nursery.start_soon(stream.receive, sub)
                nursery.start_soon(stream.publish, pub_conn.channel("cut"))
                for duration in cuts:
                    await stream.more()
                    opened = [c.transports_opened for c in (pub_conn, sub_conn)]
                    tunnel.cut(duration)
                    await wait_until(lambda: not tunnel.cutting)
                    for conn, before in zip((pub_conn, sub_conn), opened, strict=True):
                        await reconnected(conn, before)
                await stream.finish()
                nursery.cancel_scope.cancel()
            assert (pub_conn.id, sub_conn.id) == ids
            assert tunnel.refused >= 1
            for conn in (pub_conn, sub_conn):
                assert set(conn.transport_log) == {COMET}
                connected = connected_events(conn)
                assert len(connected) == 1 + len(cuts)
                assert all(e.resumed and e.reason is None for e in connected[1:]), connected
            reattached = attached_events(sub_conn)
            assert len(reattached) == 1 + len(cuts) and all(e.resumed for e in reattached[1:])
    stream.check()


async def test_comet_recover_in_a_new_client(frontend: FrontendProcess) -> None:
    """recover= over /comet/connect (RTN16): a new client takes over the same connection and
    gets exactly what the abandoned one missed."""
    with trio.fail_after(30):
        async with continuity.connect(frontend.url, key=API_KEY, transports=[COMET]) as publisher:
            pub_ch = publisher.channel("recover")
            async with continuity.connect(frontend.url, key=API_KEY, transports=[COMET]) as conn:
                async with conn.channel("recover").subscribe() as sub:
                    for n in range(5):
                        await pub_ch.publish("m", n)
                    first = [(await sub.receive()).data for _ in range(5)]
                key, old_id = conn.recovery_key(), conn.id
                assert key is not None
                conn.abandon()  # as if the process died: no CLOSE
            for n in range(5, 10):
                await pub_ch.publish("m", n)
            async with continuity.connect(
                frontend.url, key=API_KEY, recover=key, transports=[COMET]
            ) as again:
                assert again.id == old_id and again.transport == COMET
                ch = again.channel("recover")
                async with ch.subscribe() as sub:
                    assert ch.last_attach is not None and ch.last_attach.resumed
                    rest = [(await sub.receive()).data for _ in range(5)]
    assert first + rest == list(range(10))


@pytest.mark.parametrize("mode", ["reject", "close"])
async def test_fallback_to_comet_when_the_upgrade_is_blocked(
    frontend: FrontendProcess, nursery: trio.Nursery, mode: Mode
) -> None:
    """A proxy that answers the upgrade with 403, or closes it: the client falls back to Comet in
    the same connect attempt, works, and resumes over Comet. A 403 marks WebSocket unavailable
    (later attempts go straight to Comet); a bare close is retried, and falls back again."""
    gate = UpgradeGate("127.0.0.1", frontend.port, mode)
    await nursery.start(gate.serve)
    with trio.fail_after(30):
        async with (
            continuity.connect(gate.url, key=API_KEY, backoff=FAST_BACKOFF) as conn,
            continuity.connect(frontend.url, key=API_KEY) as publisher,
        ):
            assert conn.transports == (WS, COMET)
            assert conn.transport == COMET and list(conn.transport_log) == [COMET]
            assert gate.upgrades_blocked == 1
            assert len(connected_events(conn)) == 1  # one connect attempt: no DISCONNECTED on the way
            assert not any(
                e.state is ConnectionState.DISCONNECTED
                for e in conn.event_log
                if isinstance(e, ConnectionEvent)
            )
            assert conn.websocket_unavailable is (mode == "reject")
            ch = conn.channel("fallback")
            async with ch.subscribe() as sub:
                assert await ch.publish("mine", 0)
                await publisher.channel("fallback").publish("theirs", 1)
                assert [(await sub.receive()).data for _ in range(2)] == [0, 1]
                conn_id = conn.id
                opened = conn.transports_opened
                conn.drop_transport()
                await reconnected(conn, opened)
                assert conn.id == conn_id and list(conn.transport_log) == [COMET, COMET]
                assert connected_events(conn)[-1].resumed
                assert gate.upgrades_blocked == (1 if mode == "reject" else 2)
                await publisher.channel("fallback").publish("theirs", 2)
                assert (await sub.receive()).data == 2


async def test_fallback_after_the_upgrade_times_out(frontend: FrontendProcess, nursery: trio.Nursery) -> None:
    """A proxy that swallows the upgrade: the connect attempt times out (request_timeout), and the
    next attempt starts with Comet and stays there."""
    gate = UpgradeGate("127.0.0.1", frontend.port, "hang")
    await nursery.start(gate.serve)
    with trio.fail_after(30):
        async with continuity.connect(
            gate.url, key=API_KEY, backoff=FAST_BACKOFF, request_timeout=1.5, connect_timeout=20
        ) as conn:
            assert conn.transport == COMET and conn.websocket_unavailable
            disconnected = [
                e
                for e in conn.event_log
                if isinstance(e, ConnectionEvent) and e.state is ConnectionState.DISCONNECTED
            ]
            assert len(disconnected) == 1 and disconnected[0].reason is not None
            assert disconnected[0].reason.code == 80003
            assert gate.upgrades_blocked == 1
            assert await conn.channel("slow-proxy").publish("m", 1)

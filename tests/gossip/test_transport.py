"""Transport conformance (one test body, both transports) and the trio member API."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

import gossip
from gossip import GossipConfig, MemberState, MemoryNetwork, Transport, open_member, open_udp_tcp_transport
from gossip.members import EventKind, MemberEvent

TransportFactory = Callable[[], AbstractAsyncContextManager[Transport]]


@pytest.fixture(params=["udp", "memory"])
def open_transport(request: pytest.FixtureRequest) -> TransportFactory:
    if request.param == "udp":
        return lambda: open_udp_tcp_transport("127.0.0.1", 0, stream_timeout=2.0)
    network = MemoryNetwork(seed=1, delay=(0.001, 0.002))
    return lambda: network.open_transport(("127.0.0.1", 0))


async def test_transport_conformance(open_transport: TransportFactory) -> None:
    with trio.fail_after(10):
        async with open_transport() as a, open_transport() as b:
            assert a.local_address[1] != 0 and a.local_address != b.local_address
            await a.send_packet(b.local_address, b"datagram")
            got = await b.receive()
            assert (got.src, got.data, got.stream) == (a.local_address, b"datagram", False)
            big = bytes(range(256)) * 400
            await b.send_stream(a.local_address, big)
            got = await a.receive()
            assert (got.data, got.stream) == (big, True)
            closed = b.local_address
        async with open_transport() as c:
            with pytest.raises(OSError):
                await c.send_stream(closed, b"nobody home")


async def wait_until(events: trio.MemoryReceiveChannel[MemberEvent], condition: Callable[[], bool]) -> None:
    """Wait for `condition` to hold, re-checking it after each membership event."""
    while not condition():
        await events.receive()


async def poll_until(condition: Callable[[], bool], interval: float = 0.01) -> None:
    """Re-check `condition` every `interval` s (the caller bounds the wait with fail_after)."""
    while not condition():  # noqa: ASYNC110 - a counter has no event to wait on
        await trio.sleep(interval)


async def next_event(
    events: trio.MemoryReceiveChannel[MemberEvent], kind: EventKind, name: str
) -> MemberEvent:
    async for event in events:
        if event.kind == kind and event.member.name == name:
            return event
    raise AssertionError("event stream ended")


@asynccontextmanager
async def memory_cluster(n: int, network: MemoryNetwork) -> AsyncIterator[list[gossip.Member]]:
    config = GossipConfig.local()
    async with trio.open_nursery() as nursery:
        members: list[gossip.Member] = []
        done = trio.Event()

        async def run(i: int, task_status: trio.TaskStatus[gossip.Member] = trio.TASK_STATUS_IGNORED) -> None:
            seeds = [members[0].address] if members else []
            async with open_member(
                config, bind=("10.0.0.1", 0), seeds=seeds, name=f"m{i}", network=network, secret="s"
            ) as member:
                task_status.started(member)
                await done.wait()

        for i in range(n):
            members.append(await nursery.start(run, i))
        yield members
        done.set()


async def test_member_api_on_the_memory_network(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=2, delay=(0.001, 0.003))
    with trio.fail_after(60):
        async with memory_cluster(3, network) as (m0, m1, m2):
            events = m0.events()
            await wait_until(events, lambda: {m.name for m in m0.alive()} == {"m0", "m1", "m2"})
            await m2.update_metadata(zone="b", load=0.75, state=gossip.ServingState.DRAINING)
            updated = await next_event(events, EventKind.UPDATED, "m2")
            assert (updated.member.metadata.zone, updated.member.metadata.load) == ("b", 0.75)
            await m1.leave()
            await next_event(events, EventKind.LEFT, "m1")
            assert {m.name: m.state for m in m0.members()}["m1"] == MemberState.LEFT


async def test_members_over_udp_join_and_count_bad_datagrams() -> None:
    config = GossipConfig.local()
    with trio.fail_after(20):
        async with open_member(config, secret="k1") as a:
            events = a.events()
            async with open_member(config, seeds=[a.address], secret="k1") as b:
                await wait_until(events, lambda: len(a.alive()) == 2)
                await wait_until(b.events(), lambda: len(b.alive()) == 2)
                assert {m.name for m in b.members()} == {a.name, b.name}
                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with sock:
                    await sock.sendto(b"\x01\x01" + b"forged" * 10, a.address)
                    await sock.sendto(b"\x07garbage", a.address)
                    await sock.sendto(b"\x01\x00" + b"x" * 3000, a.address)
                    async with open_member(config, seeds=[a.address], secret="other") as intruder:
                        await sock.sendto(b"\x01", a.address)
                        await poll_until(lambda: a.counters.dropped >= 5)
                        assert intruder.name not in {m.name for m in a.members()}
                c = a.counters
                assert c.dropped_unauthenticated >= 2 and c.dropped_version == 1 and c.dropped_oversized == 1

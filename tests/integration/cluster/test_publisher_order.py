"""Publisher order across repeated home kills, on real processes (issue 11, point 1).

One SDK connection pipelines numbered publishes on several channels (up to ``PIPELINE`` in flight
on each, none awaiting the previous ACK) while, ``KILLS`` times, a frontend that is home of some of
those channels (never the publisher's own) is killed with SIGKILL and started again. One
connection's publishes on a channel must be numbered in the order it sent them, across every
failure: an ACKed publish never has a lower serial than one it sent before, and a subscriber
receives each publisher's messages in send order. A publish that cannot keep its place is NACKed.
The test prints the publisher-order violations over the kills (the figure issue 11 asks for).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import continuity
from tests.integration.cluster.streams import server_of
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY
from tests.support.streams import FAST_BACKOFF, parse_serial, wait_until

pytestmark = pytest.mark.integration

CHANNELS = [f"order:{i}" for i in range(12)]
PIPELINE = 4
RATE = 20.0  # publishes/s per channel
KILLS = 3


@dataclass
class Pipelined:
    """Send order (n) -> outcome for one channel."""

    channel: str
    acked: dict[int, str] = field(default_factory=dict)
    nacked: dict[int, str] = field(default_factory=dict)
    sent: int = 0

    async def run(self, conn: continuity.Connection, stop: trio.Event) -> None:
        ch = conn.channel(self.channel)
        in_flight = trio.Semaphore(PIPELINE)

        async def one(n: int) -> None:
            try:
                [serial] = await ch.publish("n", {"n": n})  # msgSerial taken before the first await
                assert serial is not None
                self.acked[n] = serial
            except continuity.PublishError as exc:
                self.nacked[n] = str(exc)
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            while not stop.is_set():
                await in_flight.acquire()
                n = self.sent
                self.sent += 1
                nursery.start_soon(one, n)
                with trio.move_on_after(1 / RATE):  # pacing, not waiting for a condition
                    await stop.wait()

    def order_violations(self) -> list[tuple[int, str, int, str]]:
        """(n, serial, earlier_n, earlier_serial): ACKed below a publish sent before it."""
        out = []
        top: tuple[int, str] | None = None
        for n in sorted(self.acked):
            serial = self.acked[n]
            if top is not None and parse_serial(serial) < parse_serial(top[1]):
                out.append((n, serial, *top))
            if top is None or parse_serial(serial) > parse_serial(top[1]):
                top = (n, serial)
        return out


async def _subscribe(
    url: str, got: dict[str, list[tuple[int, str]]], task_status: trio.TaskStatus[None]
) -> None:
    async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
        async with trio.open_nursery() as nursery:
            for name in CHANNELS:
                await nursery.start(_follow, conn.channel(name), got.setdefault(name, []))
            task_status.started()


async def _follow(
    ch: continuity.Channel, into: list[tuple[int, str]], task_status: trio.TaskStatus[None]
) -> None:
    async with ch.subscribe() as sub:
        task_status.started()
        async for msg in sub:
            assert isinstance(msg.data, dict) and msg.serial is not None
            into.append((msg.data["n"], msg.serial))


async def test_pipelined_publishes_keep_their_order_across_repeated_home_kills(tmp_path: Path) -> None:
    with trio.fail_after(240):
        async with run_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            url = cluster.router_url()
            got: dict[str, list[tuple[int, str]]] = {}
            await nursery.start(_subscribe, url, got)
            stop = trio.Event()
            pubs = [Pipelined(name) for name in CHANNELS]
            done = trio.Event()
            publisher: list[continuity.Connection] = []

            async def publish_all() -> None:
                async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as c:
                    publisher.append(c)
                    for name in CHANNELS:
                        await c.channel(name).attach()
                    async with trio.open_nursery() as inner:
                        for p in pubs:
                            inner.start_soon(p.run, c, stop)
                done.set()

            nursery.start_soon(publish_all)
            with trio.fail_after(20):
                await wait_until(lambda: all(len(p.acked) >= 10 for p in pubs))
            killed = []
            for _ in range(KILLS):
                own = server_of(publisher[0])
                homes = await cluster.homes()
                homed = Counter(fe for ch, fe in homes.items() if ch in CHANNELS and fe != own)
                assert homed, f"every channel is homed on the publisher's frontend {own}: {homes}"
                victim = homed.most_common(1)[0][0]  # the home of the most channels, never our own
                before = {p.channel: len(p.acked) for p in pubs}
                await cluster.kill(victim)
                killed.append((victim, sorted(ch for ch, fe in homes.items() if fe == victim)))
                with trio.fail_after(30):  # every channel ACKs again after the kill
                    await wait_until(lambda b=before: all(len(p.acked) >= b[p.channel] + 10 for p in pubs))
                await cluster.start(victim)
                await cluster.wait_converged()
            stop.set()
            with trio.fail_after(30):
                await done.wait()
            final = {p.channel: max(p.acked.values(), key=parse_serial) for p in pubs}
            with trio.fail_after(20):
                await wait_until(
                    lambda: all(
                        got.get(ch) and parse_serial(got[ch][-1][1]) >= parse_serial(final[ch])
                        for ch in CHANNELS
                    )
                )
            nursery.cancel_scope.cancel()
    violations = {p.channel: p.order_violations() for p in pubs}
    count = sum(len(v) for v in violations.values())
    acked = sum(len(p.acked) for p in pubs)
    nacked = sum(len(p.nacked) for p in pubs)
    print(f"kills={killed} acked={acked} nacked={nacked} publisher_order_violations={count}")
    assert count == 0, f"publishes numbered out of send order: {violations}"
    for ch, seen in got.items():
        ns = [n for n, _ in seen]
        assert ns == sorted(ns), f"{ch}: a subscriber received the publisher's messages out of order"
        assert len(set(ns)) == len(ns), f"{ch}: a message was delivered twice"
        serials = [parse_serial(s) for _, s in seen]
        for (e0, s0), (e1, s1) in itertools.pairwise(serials):
            assert e0 == e1 and s1 > s0, f"{ch}: serials out of order {e0}:{s0} -> {e1}:{s1}"
        acked_ns = {n for p in pubs if p.channel == ch for n in p.acked}
        first = ns[0] if ns else 0
        missing = {n for n in acked_ns if n >= first} - set(ns)
        assert not missing, f"{ch}: ACKed publishes never delivered: {sorted(missing)[:5]}"

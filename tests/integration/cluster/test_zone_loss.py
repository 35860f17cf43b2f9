"""Losing a zone (issue 11): real processes, two frontend zones and a witness router in a third.

- Both frontends of zone b are killed with SIGKILL while every channel is published to: zone a
  (with the witness's vote, a majority of zones) keeps ACKing; the time from the loss to each
  channel's first ACK of a publish sent after it is measured, printed and held under 10 s. Zone b
  is restarted; publishing goes on; every subscriber got every ACKed message once, in serial
  order, with no gap and one payload per serial (no split brain).
- Zone b is cut off by a real partition (its frontends in one network namespace) and healed: the
  majority side keeps ACKing, zone b's side refuses (its /health says ``no_quorum``), and after
  the heal nothing is lost or duplicated and serials continue.
- A single-zone cluster starts, warns, and sets ``continuity_replication_degraded`` to 1.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import continuity
from tests.integration.cluster.streams import Publisher, Subscriber, check_exactly_once
from tests.support import netns
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY, http_get
from tests.support.streams import FAST_BACKOFF, wait_until, wait_until_async

pytestmark = pytest.mark.integration

CHANNELS = [f"zone-loss-{i}" for i in range(6)]
ROUTERS = (("rt1", "a"), ("rt-w", "w"))  # rt-w alone in zone w: the witness
ZONES = ["a", "b", "w"]
IDLE_MS = 1000
TARGET_S = 10.0
PUBLISH_DEADLINE_S = 15.0  # the publish deadline: a refusal that waited for it would not be prompt
PUBLISH_EVERY_S = 0.1


@dataclass
class TimedPublisher:
    """Publishes to one channel every ``PUBLISH_EVERY_S`` without waiting for each ACK (each publish
    its own task, one connection per channel: a blocked channel holds back only its own ACKs), and
    records (sent, answered) times and the serials ACKed, in the shape ``check_exactly_once`` reads."""

    channel: str
    record: Publisher = field(init=False)
    times: list[tuple[float, float, bool]] = field(default_factory=list)  # (sent, answered, acked)
    stop: trio.Event = field(default_factory=trio.Event)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.record = Publisher(self.channel)

    async def run(self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF, request_timeout=3.0) as conn:
            ch = conn.channel(self.channel)
            await ch.attach()
            task_status.started()
            async with trio.open_nursery() as nursery:
                while not self.stop.is_set():
                    n = self.record.sent
                    self.record.sent += 1
                    nursery.start_soon(self._one, ch, n)
                    with trio.move_on_after(PUBLISH_EVERY_S):
                        await self.stop.wait()
            self.record.finished.set()

    async def _one(self, ch: continuity.Channel, n: int) -> None:
        sent = trio.current_time()
        self.in_flight += 1
        try:
            [serial] = await ch.publish("n", {"n": n})
        except continuity.PublishError as exc:
            self.record.failed.append((n, str(exc)))
            self.times.append((sent, trio.current_time(), False))
            return
        finally:
            self.in_flight -= 1
        assert serial is not None
        self.record.acked.append((n, serial))
        self.times.append((sent, trio.current_time(), True))

    def first_ack_after(self, t0: float) -> float | None:
        """Seconds from ``t0`` to the first ACK of a publish sent at or after ``t0``."""
        acks = [answered for sent, answered, ok in self.times if ok and sent >= t0]
        return min(acks) - t0 if acks else None


async def _start_traffic(
    cluster: LocalCluster, nursery: trio.Nursery
) -> tuple[dict[str, TimedPublisher], dict[str, list[Subscriber]]]:
    url = cluster.router_url()
    pubs: dict[str, TimedPublisher] = {}
    subs: dict[str, list[Subscriber]] = {}
    for name in CHANNELS:
        subs[name] = []
        for _ in range(2):
            sub = Subscriber(name)
            subs[name].append(await nursery.start(functools.partial(sub.run, url, request_timeout=3.0)))
        pubs[name] = TimedPublisher(name)
        await nursery.start(pubs[name].run, url)
    with trio.fail_after(20):
        await wait_until(lambda: all(len(p.record.acked) >= 5 for p in pubs.values()))
    return pubs, subs


async def _finish_and_check(pubs: dict[str, TimedPublisher], subs: dict[str, list[Subscriber]]) -> None:
    """Stop publishing, wait until every answer is in and every subscriber caught up, then check."""
    for p in pubs.values():
        p.stop.set()
    with trio.fail_after(60):
        for p in pubs.values():
            await p.record.finished.wait()
    for name, p in pubs.items():
        last = max((s for _, s in p.record.acked), key=_seq)
        with trio.fail_after(30):
            await wait_until(lambda: all(s.caught_up(last) for s in subs[name]))  # noqa: B023
        check_exactly_once(p.record, subs[name])


def _seq(serial: str) -> tuple[str, int]:
    epoch, _, seq = serial.rpartition(":")
    return epoch, int(seq)


async def _metric(cluster: LocalCluster, node: str, name: str) -> float:
    n = cluster.nodes[node]
    status, body = await http_get(n.host, n.http_port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return math.nan


async def _health(cluster: LocalCluster, node: str) -> tuple[int, dict[str, object]]:
    n = cluster.nodes[node]
    status, body = await http_get(n.host, n.http_port, "/health")
    return status, json.loads(body)


async def test_both_frontends_of_a_zone_killed_then_restarted(tmp_path: Path) -> None:
    with trio.fail_after(240):
        async with (
            run_cluster(tmp_path, routers=ROUTERS, zones=ZONES, max_idle_interval_ms=IDLE_MS) as cluster,
            trio.open_nursery() as nursery,
        ):
            pubs, subs = await _start_traffic(cluster, nursery)
            t0 = trio.current_time()
            async with trio.open_nursery() as kills:
                kills.start_soon(cluster.kill, "fe-b1")
                kills.start_soon(cluster.kill, "fe-b2")
            with trio.fail_after(TARGET_S + 20):
                await wait_until(lambda: all(p.first_ack_after(t0) is not None for p in pubs.values()))
            firsts = {name: p.first_ack_after(t0) for name, p in pubs.items()}
            shown = {k: round(v or 0, 2) for k, v in firsts.items()}
            print("time to first ACK after zone b's loss (s):", json.dumps(shown))
            assert all(v is not None and v <= TARGET_S for v in firsts.values()), firsts

            # Zone a says it replicates inside its zone, and stays ready.
            async def degraded() -> bool:
                return await _metric(cluster, "fe-a1", "continuity_replication_degraded") == 1.0

            with trio.fail_after(10):
                await wait_until_async(degraded)
            status, health = await _health(cluster, "fe-a1")
            assert status == 200 and health["write"]["degraded"], health  # type: ignore[index]

            await cluster.start("fe-b1")
            await cluster.start("fe-b2")
            await cluster.wait_converged(within=30)
            target = {name: len(p.record.acked) + 20 for name, p in pubs.items()}
            with trio.fail_after(30):
                await wait_until(lambda: all(len(p.record.acked) >= target[n] for n, p in pubs.items()))

            async def replicated_across_zones() -> bool:
                return await _metric(cluster, "fe-a1", "continuity_replication_degraded") == 0.0

            with trio.fail_after(20):
                await wait_until_async(replicated_across_zones)
            await _finish_and_check(pubs, subs)
            nursery.cancel_scope.cancel()


async def test_a_side_without_a_majority_refuses_at_once(tmp_path: Path) -> None:
    """Zone b's frontends and the witness router killed together: zone a holds 1 of 3 zone votes and
    knows it (no other zone serves, no witness in reach), so it refuses publishes with 50350 as soon
    as its map shows that, not at the 15 s publish deadline. (A publish that was in flight to a
    lost home, or numbered and sent to a lost replica, has an unknown outcome: it is never refused,
    and the ACKs and NACKs of its connection's later publishes wait behind it, as the protocol's order
    requires; so the refusals are measured on connections opened once the survivors see the loss.)
    Nothing refused is delivered."""
    with trio.fail_after(180):
        async with (
            run_cluster(tmp_path, routers=ROUTERS, zones=ZONES, max_idle_interval_ms=IDLE_MS) as cluster,
            trio.open_nursery() as nursery,
        ):
            pubs, subs = await _start_traffic(cluster, nursery)
            for p in pubs.values():
                p.stop.set()
            t0 = trio.current_time()
            async with trio.open_nursery() as kills:
                for name in ("rt-w", "fe-b1", "fe-b2"):
                    kills.start_soon(cluster.kill, name)

            # The fresh connections open once both survivors see zone b out of reach (/health:
            # no_quorum, milliseconds after the kill). A publish numbered in the instant before, when
            # its home still placed copies in zone b, went to a replica that may hold it: its outcome
            # is unknown, so it is never refused and its connection's later answers wait behind it
            # (1 run in 17: a fresh connection's msgSerial 0, appended at fe-a2 1 ms after its link
            # to fe-b1 dropped, stayed pending and its 34 NACKs waited behind it).
            async def survivors_see_the_loss() -> bool:
                answers = [await _health(cluster, fe) for fe in ("fe-a1", "fe-a2")]
                return all(status == 503 and health["status"] == "no_quorum" for status, health in answers)

            with trio.fail_after(10):
                await wait_until_async(survivors_see_the_loss)
            fresh = {name: TimedPublisher(name) for name in CHANNELS}
            for p in fresh.values():
                p.record.sent = 1_000_000  # payloads apart from the first publishers'
                await nursery.start(p.run, cluster.router_url())

            def refused(p: TimedPublisher) -> list[tuple[float, float]]:
                return [(sent, answered) for sent, answered, ok in p.times if not ok]

            with trio.fail_after(PUBLISH_DEADLINE_S):
                await wait_until(lambda: all(len(refused(p)) >= 10 for p in fresh.values()))
            assert all("50350" in why for p in fresh.values() for _, why in p.record.failed), [
                p.record.failed[:2] for p in fresh.values()
            ]
            assert not any(p.record.acked for p in fresh.values())
            first = {name: round(min(a for _, a in refused(p)) - t0, 2) for name, p in fresh.items()}
            waited = [round(a - s, 3) for p in fresh.values() for s, a in refused(p)]
            print("first 50350 after zone b and the witness were killed (s):", json.dumps(first))
            known = t0 + max(first.values())
            since = [a - s for p in fresh.values() for s, a in refused(p) if s >= known]
            print(f"publish to 50350 (s): max {max(waited)}, median {sorted(waited)[len(waited) // 2]}; "
                  f"once known: max {max(since, default=0):.3f} over {len(since)}")  # fmt: skip
            assert max(waited) < PUBLISH_DEADLINE_S - 5, waited
            for name, p in fresh.items():
                nacked = {n for n, _ in p.record.failed}
                assert not any(n in nacked for sub in subs[name] for n, _ in sub.got), name
            nursery.cancel_scope.cancel()


USABLE, WHY_NOT = netns.available()


@pytest.mark.skipif(not USABLE, reason=f"the zone partition needs network namespaces: {WHY_NOT}")
async def test_a_zone_partition_heals_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    with netns.isolated_host() as host, trio.fail_after(240):
        placed = {name: (host.host_ip, host.exec_prefix()) for name in ("fe-b1", "fe-b2")}
        async with (
            run_cluster(
                tmp_path, host=host.root_ip, placed=placed, routers=ROUTERS, zones=ZONES,
                max_idle_interval_ms=IDLE_MS,
            ) as cluster,
            trio.open_nursery() as nursery,
        ):  # fmt: skip
            pubs, subs = await _start_traffic(cluster, nursery)
            t0 = trio.current_time()
            host.cut()
            with trio.fail_after(TARGET_S + 20):
                await wait_until(lambda: all(p.first_ack_after(t0) is not None for p in pubs.values()))
            firsts = {name: round(p.first_ack_after(t0) or 0, 2) for name, p in pubs.items()}
            print("time to first ACK after zone b was cut off (s):", json.dumps(firsts))

            # The minority side refuses: fe-b1's /health says no_quorum (read inside its namespace
            # is not possible from here, so through its log: the quorum change and the refusals).
            def b_side_refused() -> bool:
                text = cluster.nodes["fe-b1"].log_text() + cluster.nodes["fe-b2"].log_text()
                return "channel.replica_blocked" in text or "zone.grant_refused" in text

            with trio.fail_after(20):
                await wait_until(b_side_refused)
            target = {name: len(p.record.acked) + 20 for name, p in pubs.items()}
            with trio.fail_after(30):
                await wait_until(lambda: all(len(p.record.acked) >= target[n] for n, p in pubs.items()))
            host.heal()
            await cluster.wait_converged(within=40)
            target = {name: len(p.record.acked) + 20 for name, p in pubs.items()}
            with trio.fail_after(40):
                await wait_until(lambda: all(len(p.record.acked) >= target[n] for n, p in pubs.items()))
            await _finish_and_check(pubs, subs)
            nursery.cancel_scope.cancel()


async def test_a_single_zone_cluster_warns_and_says_it_is_degraded(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with run_cluster(tmp_path, frontends=(("fe-a1", "a"), ("fe-a2", "a"))) as cluster:
            log_says = lambda: all('"zone.single_zone"' in fe.log_text() for fe in cluster.frontends)  # noqa: E731
            with trio.fail_after(20):
                await wait_until(log_says)

            async def gauge_set() -> bool:
                gauge = "continuity_replication_degraded"
                values = [await _metric(cluster, fe.name, gauge) for fe in cluster.frontends]
                return values == [1.0] * len(values)

            with trio.fail_after(20):
                await wait_until_async(gauge_set)
            status, health = await _health(cluster, "fe-a1")
            assert status == 200 and health["write"]["degraded"] is True, health  # type: ignore[index]
            # It works: a publish is ACKed and delivered.
            async with continuity.connect(cluster.router_url(), key=API_KEY, backoff=FAST_BACKOFF) as conn:
                ch = conn.channel("one-zone")
                async with ch.subscribe() as sub:
                    [serial] = await ch.publish("n", {"n": 1})
                    with trio.fail_after(10):
                        msg = await sub.__anext__()
                    assert msg.serial == serial

"""Failover on a real cluster (4 frontends in 2 zones, a router): nothing lost, nothing twice.

Clients use the SDK through the router. A publisher sends numbered messages
throughout; subscribers record what they get; the check is exactly-once and in
serial order for every ACKed publish (DESIGN invariants 1-3).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.integration.cluster.streams import Publisher, Subscriber, check_exactly_once, server_of
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.streams import wait_until

pytestmark = pytest.mark.integration

CHANNEL = "feed"


async def _start(nursery: trio.Nursery, url: str, n: int) -> tuple[Publisher, list[Subscriber]]:
    subs = [await nursery.start(Subscriber(CHANNEL).run, url) for _ in range(n)]
    pub = Publisher(CHANNEL)
    await nursery.start(lambda task_status: pub.run(url, rate=100, task_status=task_status))
    return pub, subs


async def _finish(pub: Publisher, subs: list[Subscriber], nursery: trio.Nursery, more: int = 50) -> None:
    """Publish ``more`` messages after the fault, then wait until every subscriber has them all."""
    target = len(pub.acked) + more
    with trio.fail_after(20):
        await wait_until(lambda: len(pub.acked) >= target)
    pub.stop.set()
    with trio.fail_after(15):
        await pub.finished.wait()  # its last publish is answered: acked is final
    with trio.fail_after(15):
        await wait_until(lambda: pub.acked and all(s.caught_up(pub.acked[-1][1]) for s in subs))
    nursery.cancel_scope.cancel()


async def test_kill_9_of_an_owner_keeps_connection_ids_and_loses_nothing(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with run_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            pub, subs = await _start(nursery, cluster.router_url(), 12)
            owners = {server_of(s.conn) for s in subs if s.conn}
            victim = sorted(owners)[0]
            victims = [s for s in subs if s.conn and server_of(s.conn) == victim]
            assert victims
            with trio.fail_after(10):
                await wait_until(lambda: len(pub.acked) >= 30)
            await cluster.kill(victim)
            try:
                with trio.fail_after(15):
                    await wait_until(lambda: all(s.conn and server_of(s.conn) != victim for s in victims))
            except trio.TooSlowError:
                for s in victims:
                    assert s.conn is not None
                    print(
                        "STUCK?", s.first_id, s.conn.id, s.conn.state, server_of(s.conn), s.conn.error_reason
                    )
                print("PUB", len(pub.acked), pub.sent, len(pub.failed))
                raise
            await _finish(pub, subs, nursery)
        for s in subs:
            assert s.conn is not None and s.conn.id == s.first_id, "connectionId changed across failover"
        assert all(server_of(s.conn) != victim for s in victims if s.conn)
        assert len(pub.acked) >= 80 and all(len(s.got) >= 80 for s in subs)
        check_exactly_once(pub, subs)
        print(f"victim={victim} moved={len(victims)} acked={len(pub.acked)} failed={pub.failed}")


async def _home_of(cluster: LocalCluster, channel: str) -> str:
    for fe in cluster.frontends:
        if fe.running and channel in (await fe.get_json("/cluster"))["channels"]["home"]:
            return fe.name
    raise AssertionError(f"no running frontend is home of {channel}")


async def test_kill_9_of_a_channel_home_loses_no_acked_message_and_keeps_the_epoch(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with run_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            pub, subs = await _start(nursery, cluster.router_url(), 6)
            with trio.fail_after(10):
                await wait_until(lambda: len(pub.acked) >= 20)
            home = await _home_of(cluster, CHANNEL)
            epoch = pub.acked[-1][1].rpartition(":")[0]
            await cluster.kill(home)
            target = len(pub.acked) + 20
            with trio.fail_after(20):
                await wait_until(lambda: len(pub.acked) >= target)
            new_home = await _home_of(cluster, CHANNEL)
            await _finish(pub, subs, nursery)
        assert new_home != home
        assert {serial.rpartition(":")[0] for _, serial in pub.acked} == {epoch}, "the epoch changed"
        check_exactly_once(pub, subs)
        print(f"home={home} new_home={new_home} acked={len(pub.acked)} failed={pub.failed}")


async def test_sigterm_drain_then_rolling_restart_of_every_frontend_loses_nothing(tmp_path: Path) -> None:
    with trio.fail_after(150):
        async with run_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
            pub, subs = await _start(nursery, cluster.router_url(), 6)
            with trio.fail_after(10):
                await wait_until(lambda: len(pub.acked) >= 20)
            for fe in cluster.frontends:
                code = await cluster.stop(fe.name)  # SIGTERM: drain
                assert code == 0, f"{fe.name} exited {code} after SIGTERM"
                target = len(pub.acked) + 20
                with trio.fail_after(20):
                    await wait_until(lambda target=target: len(pub.acked) >= target)
                await cluster.start(fe.name)
                await cluster.wait_converged()
            await _finish(pub, subs, nursery)
        for s in subs:
            assert s.conn is not None and s.conn.id == s.first_id, "connectionId changed across the restarts"
        assert not pub.failed
        check_exactly_once(pub, subs)


async def test_a_joining_frontend_takes_homes_and_nothing_is_lost(tmp_path: Path) -> None:
    channels = [f"join-{i}" for i in range(8)]
    with trio.fail_after(90):
        async with run_cluster(tmp_path, spare=[("fe-a3", "a")]) as cluster, trio.open_nursery() as nursery:
            url = cluster.router_url()
            pubs, all_subs = [], []
            for ch in channels:
                subs = [await nursery.start(Subscriber(ch).run, url) for _ in range(2)]
                pub = Publisher(ch)
                await nursery.start(
                    lambda task_status, pub=pub: pub.run(url, rate=50, task_status=task_status)
                )
                pubs.append(pub)
                all_subs.append(subs)
            with trio.fail_after(10):
                await wait_until(lambda: all(len(p.acked) >= 10 for p in pubs))
            await cluster.start("fe-a3")
            await cluster.wait_converged()
            targets = [len(p.acked) + 30 for p in pubs]
            with trio.fail_after(30):
                await wait_until(lambda: all(len(p.acked) >= t for p, t in zip(pubs, targets, strict=True)))
            moved = (await cluster.nodes["fe-a3"].get_json("/cluster"))["channels"]["home"]
            for p in pubs:
                p.stop.set()
                with trio.fail_after(15):
                    await p.finished.wait()  # its last publish is answered: acked is final
            with trio.fail_after(15):
                await wait_until(
                    lambda: all(
                        s.caught_up(p.acked[-1][1])
                        for p, subs in zip(pubs, all_subs, strict=True)
                        for s in subs
                    )
                )
            nursery.cancel_scope.cancel()
        assert moved, "the new frontend took no channel home"
        for p, subs in zip(pubs, all_subs, strict=True):
            assert not p.failed
            check_exactly_once(p, subs)

"""A frontend cut off from the cluster by a real partition (network namespace), then healed.

fe-b2 runs in its own network namespace, joined to the others by a veth link; taking the link
down loses every packet both ways, as a real partition does. Its clients (through the router)
are taken over elsewhere with their connectionIds; when the link comes back, fe-b2 learns of
the higher ownership epochs and discards its stale copies, and no client ever receives a
message twice or out of order (DESIGN invariants 3, 4).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from tests.integration.cluster.streams import Publisher, Subscriber, check_exactly_once, server_of
from tests.support import netns
from tests.support.cluster import run_cluster
from tests.support.streams import wait_until, wait_until_async

pytestmark = pytest.mark.integration

USABLE, WHY_NOT = netns.available()
VICTIM = "fe-b2"
CHANNEL = "feed"
# Clients notice a silent transport after maxIdleInterval + request_timeout.
IDLE_MS = 1000
REQUEST_TIMEOUT_S = 2.0


@pytest.mark.skipif(not USABLE, reason=f"partition test needs network namespaces: {WHY_NOT}")
async def test_partitioned_frontend_is_taken_over_and_discards_its_stale_state_on_heal(
    tmp_path: Path,
) -> None:
    with netns.isolated_host() as host, trio.fail_after(120):
        placed = {VICTIM: (host.host_ip, host.exec_prefix())}
        async with (
            run_cluster(tmp_path, host=host.root_ip, placed=placed, max_idle_interval_ms=IDLE_MS) as cluster,
            trio.open_nursery() as nursery,
        ):
            url = cluster.router_url()
            run_sub = functools.partial(Subscriber(CHANNEL).run)
            subs: list[Subscriber] = []
            # Enough subscribers that some land on the victim (the router spreads new connections).
            while sum(1 for s in subs if s.conn and server_of(s.conn) == VICTIM) < 2:
                assert len(subs) < 24, "the router never placed a client on the victim"
                sub = Subscriber(CHANNEL)
                subs.append(
                    await nursery.start(functools.partial(sub.run, url, request_timeout=REQUEST_TIMEOUT_S))
                )
            del run_sub
            pub = Publisher(CHANNEL)
            await nursery.start(lambda task_status: pub.run(url, rate=50, task_status=task_status))
            victims = [s for s in subs if s.conn and server_of(s.conn) == VICTIM]
            with trio.fail_after(10):
                await wait_until(lambda: len(pub.acked) >= 20)

            host.cut()
            with trio.fail_after(30):
                await wait_until(lambda: all(s.conn and server_of(s.conn) != VICTIM for s in victims))
            await cluster.wait_converged(dead=[VICTIM], within=20)
            target = len(pub.acked) + 30
            with trio.fail_after(20):
                await wait_until(lambda: len(pub.acked) >= target)

            host.heal()
            await cluster.wait_converged(within=30)
            victim = cluster.nodes[VICTIM]

            async def victim_dropped_everything() -> bool:
                for s in victims:
                    assert s.first_id is not None
                    held = await victim.get_json(f"/debug/connections/{s.first_id}")
                    if held["state"] in ("active", "detached"):
                        return False
                return True

            with trio.fail_after(20):
                await wait_until_async(victim_dropped_everything)
            target = len(pub.acked) + 30
            with trio.fail_after(20):
                await wait_until(lambda: len(pub.acked) >= target)
            pub.stop.set()
            with trio.fail_after(15):
                await pub.finished.wait()  # its last publish is answered: acked is final
            with trio.fail_after(20):
                await wait_until(lambda: all(s.caught_up(pub.acked[-1][1]) for s in subs))
            nursery.cancel_scope.cancel()
        for s in subs:
            assert s.conn is not None and s.conn.id == s.first_id, "connectionId changed across the partition"
        check_exactly_once(pub, subs)

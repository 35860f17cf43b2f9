"""Comet with the real npm ``ably`` (2.26.0) under Node, ``transports: ['comet']``, through a router.

Every request of a Comet connection (connect, recv long-polls, sends) goes through the router of a
real cluster, which pins ``/comet/<key>/...`` to the owner named in the key. The matrix:

- basic pub/sub (ACK serials, batch, binary data over JSON);
- resume across a cut with the same connectionId and no loss: a tunnel in front of the router is
  cut, or the subscriber's owner is killed with SIGKILL (takeover by the secondary);
- recover in a new client instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop._harness import cut, node_script, start_tunnel
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY

pytestmark = pytest.mark.interop

COMET = ["comet"]
FRONTENDS = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with run_cluster(tmp_path / "cluster", frontends=FRONTENDS, max_idle_interval_ms=5_000) as c:
        yield c


def router_port(cluster: LocalCluster) -> int:
    return int(cluster.router_url().rsplit(":", 1)[1])


def comet_connects(cluster: LocalCluster) -> int:
    """``comet.connect`` events logged by the frontends: the clients really used Comet."""
    return sum(n.log_text().count("comet.connect") for n in cluster.frontends)


def server_name(server_id: str | None) -> str | None:
    return server_id.removeprefix("continuity.") if server_id else None


async def test_comet_pubsub_through_the_router(tmp_path: Path, cluster: LocalCluster) -> None:
    config = {"port": router_port(cluster), "key": API_KEY, "channel": "comet:pubsub", "count": 5}
    config["transports"] = COMET
    with trio.fail_after(30):
        async with node_script(tmp_path, "pubsub.mjs", config) as script:
            result = await script.expect("result")
    assert result["attached"] == {"resumed": False, "reason": None}
    serials = [s for r in result["results"] for s in r["serials"]]
    assert [len(r["serials"]) for r in result["results"]] == [1] * 5 + [2, 1]
    received = result["received"]
    assert [m["serial"] for m in received] == serials
    assert all(m["connectionId"] == result["pubConnectionId"] for m in received)
    assert [m["data"] for m in received[:5]] == [{"i": i} for i in range(5)]
    assert [m["data"] for m in received[5:7]] == ["a", "b"]
    assert received[7]["data"] == {"buffer": "AAEC/f7/"}  # binary data, base64 over JSON
    assert not [e for e in result["logErrors"] if "90009" in e], result["logErrors"]
    assert comet_connects(cluster) >= 2


def check_continuity(ready: dict[str, Any], result: dict[str, Any]) -> None:
    """Same connectionId, CONNECTED without error, attached(resumed), every message once, in order."""
    assert result["transports"] == ["comet", "comet"], result["transports"]
    assert result["subIdAfter"] == result["subIdBefore"] == ready["subId"]
    assert result["pubIdAfter"] == result["pubIdBefore"]
    log = result["log"]
    states = [e["current"] for e in log if e["kind"] == "connection"]
    assert "disconnected" in states and states[-1] == "connected", states
    assert not {"suspended", "failed", "closed"} & set(states), states
    assert all(e["reason"] is None for e in log if e["kind"] == "connection" and e["current"] == "connected")
    attached = [e for e in log if e["kind"] == "channel" and e["current"] == "attached"]
    assert len(attached) >= 2 and attached[0]["resumed"] is False, log
    assert all(e["resumed"] and e["reason"] is None for e in attached[1:]), attached
    assert result["acked"] == result["sent"]
    assert result["nums"] == list(range(result["sent"])), "gap, duplicate or reorder"


async def test_comet_resume_across_a_tunnel_cut(tmp_path: Path, cluster: LocalCluster) -> None:
    async with trio.open_nursery() as nursery:
        tunnel = await start_tunnel(nursery, router_port(cluster))
        config = {
            "port": router_port(cluster),
            "subPort": tunnel.port,
            "key": API_KEY,
            "channel": "comet:resume",
            "intervalMs": 15,
            "tail": 20,
            "transports": COMET,
        }
        with trio.fail_after(40):
            async with node_script(tmp_path, "comet.mjs", config) as script:
                ready = await script.expect("ready")
                await cut(tunnel, 1.5)
                result = await script.expect("result")
        nursery.cancel_scope.cancel()
    check_continuity(ready, result)
    assert server_name(result["subServerAfter"]) == server_name(ready["subServer"])  # the same owner


async def test_comet_resume_after_kill_9_of_the_owner(tmp_path: Path, cluster: LocalCluster) -> None:
    config = {
        "port": router_port(cluster),
        "key": API_KEY,
        "channel": "comet:failover",
        "intervalMs": 15,
        "tail": 20,
        "transports": COMET,
    }
    with trio.fail_after(60):
        async with node_script(tmp_path, "comet.mjs", config) as script:
            ready = await script.expect("ready")
            victim = server_name(ready["subServer"])
            assert victim is not None
            await cluster.kill(victim)
            result = await script.expect("result")
    check_continuity(ready, result)
    after = server_name(result["subServerAfter"])
    assert after is not None and after != victim  # taken over, same connectionId


async def test_comet_recover_in_a_new_instance(tmp_path: Path, cluster: LocalCluster) -> None:
    base = {"port": router_port(cluster), "key": API_KEY, "channel": "comet:recover", "transports": COMET}
    base |= {"before": 3, "away": 5}
    with trio.fail_after(40):
        async with node_script(tmp_path, "recover.mjs", {**base, "role": "old"}) as old:
            key = await old.expect("recoveryKey")
            old.kill()  # a crash: no CLOSE reaches the server, only unanswered polls
            await old.proc.wait()
        assert key["nums"] == [1, 2, 3]
        config = {**base, "role": "new", "recoveryKey": key["key"], "forge": None}
        async with node_script(tmp_path, "recover.mjs", config) as new:
            result = await new.expect("result")
    # RTN16d: the same connectionId and no error; attached(resumed); 4..10 once, in order.
    assert result["connectionId"] == key["connectionId"]
    assert result["errorReason"] is None
    assert result["attached"] == {"resumed": True, "reason": None}
    assert [m["data"]["n"] for m in result["received"]] == list(range(4, 11))
    assert result["received"][-1]["connectionId"] == key["connectionId"]
    assert comet_connects(cluster) >= 4

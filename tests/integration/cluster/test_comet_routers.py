"""One Comet connection's requests alternate between two routers with no stickiness (issue 5).

Every request carries the connection key, which names its owner; both routers pin each request to
that owner, so one frontend serves the whole connection as one transport. Asserted by owner
identity: only the owner's Comet request counter moves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from kernel.protocol import Action
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.comet import CometClient, HttpLane
from tests.support.procs import API_KEY, http_get, parse_metrics

pytestmark = pytest.mark.integration


async def _comet_requests(cluster: LocalCluster) -> dict[str, float]:
    out = {}
    for fe in cluster.frontends:
        status, body = await http_get(fe.host, fe.port, "/metrics")
        assert status == 200
        metrics = parse_metrics(body.decode())
        out[fe.name] = sum(v for k, v in metrics.items() if k.startswith("continuity_comet_requests_total"))
    return out


async def test_requests_of_one_comet_connection_alternate_between_two_routers(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with run_cluster(tmp_path, routers=[("rt1", "a"), ("rt2", "b")]) as cluster:
            rt1, rt2 = cluster.routers
            before = await _comet_requests(cluster)
            comet = CometClient(rt1.host, rt1.port, {"key": API_KEY})
            [connected] = [m for m in await comet.connect() if m["action"] == Action.CONNECTED]
            owner = str(connected["connectionDetails"]["serverId"]).removeprefix("continuity.")
            lanes = [comet.send_lane, HttpLane(rt2.host, rt2.port)]  # a lane through each router
            await comet.recv_lane.aclose()
            requests = 1
            acked = []
            try:
                await comet.send({"action": int(Action.ATTACH), "channel": "alt"})
                requests += 1
                for i in range(10):
                    # Alternate: sends through one router, long-polls through the other.
                    comet.send_lane, comet.recv_lane = lanes[i % 2], lanes[(i + 1) % 2]
                    await comet.send(
                        {
                            "action": int(Action.MESSAGE),
                            "channel": "alt",
                            "msgSerial": i,
                            "messages": [{"name": "n", "data": i}],
                        }
                    )
                    requests += 1
                    while True:
                        msgs = await comet.recv()
                        requests += 1
                        acked += [m["msgSerial"] for m in msgs if m["action"] == Action.ACK]
                        if i in acked:
                            break
            finally:
                for lane in lanes:
                    await lane.aclose()
            after = await _comet_requests(cluster)
        assert acked == list(range(10))
        moved = {name: after[name] - before.get(name, 0) for name in after}
        assert moved[owner] >= requests, moved
        assert all(n == 0 for name, n in moved.items() if name != owner), f"a request left the owner: {moved}"

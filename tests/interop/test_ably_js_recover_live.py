"""Issue 17, point 4: recover of a connection whose first client is still live, with the real
ably-js over WebSocket and Comet, through a router of a cluster.

Exactly one client holds the connection: the recovering one keeps the connectionId and gets every
message; the first is told with an error (80008) and carries on under a new connectionId. The
recover gives the connection a new key (epoch + 1), so the first client's resume cannot take it
back: no ping-pong, no split.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.interop._harness import node_script
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY

pytestmark = pytest.mark.interop

COUNT = 5


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with run_cluster(tmp_path / "cluster", frontends=(("fe-a1", "a"), ("fe-b1", "b"))) as c:
        yield c


@pytest.mark.parametrize("transport", ["web_socket", "comet"])
async def test_recover_of_a_live_connection_has_one_holder(
    tmp_path: Path, cluster: LocalCluster, transport: str
) -> None:
    port = int(cluster.router_url().rsplit(":", 1)[1])
    config = {
        "port": port,
        "key": API_KEY,
        "transports": [transport],
        "channel": f"recover-live:{transport}",
        "count": COUNT,
    }
    with trio.fail_after(60):
        async with node_script(tmp_path, "recover_live.mjs", config) as script:
            result = await script.expect("result")
    expected = [f"m{n}" for n in range(1, COUNT + 1)]
    # The recovering client holds the connection, got everything once, and never lost it.
    assert result["recovered"] == result["original"] == result["secondId"]
    assert result["secondErrorReason"] is None
    assert result["secondGot"] == expected
    assert [e["current"] for e in result["secondLog"] if e["kind"] == "connection"].count("disconnected") == 0
    # The first client was told, and carries on under a new connectionId (once, no ping-pong).
    assert result["firstId"] != result["original"]
    assert result["firstState"] == "connected"
    ids = [e["id"] for e in result["firstLog"] if e["current"] == "connected"]
    assert ids and all(i == result["firstId"] for i in ids), result["firstLog"]
    told = [e["reason"] for e in result["firstLog"] if e["reason"]]
    assert any(r["code"] == 80008 for r in told), result["firstLog"]
    assert result["firstGot"][-1] == f"m{COUNT}"

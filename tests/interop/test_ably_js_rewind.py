"""Channel params with the real npm ``ably`` under Node: ``rewind`` on attach, a malformed rewind
refused, a param Ably does not document reported (the channel still attaches).

On one frontend over WebSocket and Comet; and through the router of a real cluster after the
channel's home is killed with SIGKILL (the replica's copy becomes the home and rewinds the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop._harness import API_KEY, node_script, run_frontend
from tests.support.cluster import run_cluster
from tests.support.procs import API_KEY as CLUSTER_KEY

pytestmark = pytest.mark.interop

TRANSPORTS = {"web_socket": ["web_socket"], "comet": ["comet"]}


async def rewind_run(tmp: Path, port: int, key: str = API_KEY, **config: Any) -> dict[str, Any]:
    with trio.fail_after(40):
        async with node_script(tmp, "rewind.mjs", {"port": port, "key": key, **config}) as script:
            return await script.expect("result" if config.get("params") else "published")


def check_rewound(result: dict[str, Any], published: list[str], n: int) -> None:
    received = result["received"]
    assert [m["serial"] for m in received[:-1]] == published[-n:], result
    assert received[-1]["name"] == "live" and received[-1]["serial"] == result["live"][0]
    assert result["attached"] == {"resumed": False, "hasBacklog": True, "reason": None}
    # history(untilAttach) pages back from the attach point: just before the first rewound message.
    epoch, _, seq = published[-n].rpartition(":")
    assert result["attachSerial"] == f"{epoch}:{int(seq) - 1}"
    assert result["logErrors"] == []


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_rewind_count_and_duration(tmp_path: Path, transport: str) -> None:
    async with run_frontend(tmp_path) as fe:
        base = {"transports": TRANSPORTS[transport]}
        result = await rewind_run(
            tmp_path, fe.port, channel="rw:n", publish=8, params={"rewind": "5"}, expect=5, **base
        )
        check_rewound(result, result["serials"], 5)
        assert result["params"] == {"rewind": "5"}
        # A duration: everything published within the last minute (all 8 here).
        result = await rewind_run(
            tmp_path, fe.port, channel="rw:t", publish=8, params={"rewind": "1m"}, expect=8, **base
        )
        check_rewound(result, result["serials"], 8)
        assert result["params"] == {"rewind": "1m"}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_a_bad_rewind_fails_the_channel_clearly(tmp_path: Path, transport: str) -> None:
    async with run_frontend(tmp_path) as fe:
        result = await rewind_run(
            tmp_path,
            fe.port,
            channel="rw:bad",
            params={"rewind": "lots"},
            expectFailure=True,
            transports=TRANSPORTS[transport],
        )
    assert result["error"]["code"] == 40000 and result["error"]["statusCode"] == 400
    assert "rewind='lots' is neither a message count" in result["error"]["message"]
    assert result["state"] == "failed" and result["connection"] == "connected"


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_an_unknown_param_is_reported_and_the_channel_still_attaches(
    tmp_path: Path, transport: str
) -> None:
    async with run_frontend(tmp_path) as fe:
        result = await rewind_run(
            tmp_path,
            fe.port,
            channel="rw:typo",
            publish=6,
            params={"rewind": "3", "rewnd": "5"},
            expect=3,
            transports=TRANSPORTS[transport],
        )
    received = result["received"]
    assert [m["serial"] for m in received[:-1]] == result["serials"][-3:], result
    assert result["params"] == {"rewind": "3"}  # only what was accepted is echoed
    reason = result["attached"]["reason"]
    assert result["attached"]["hasBacklog"] is True and reason is not None, result
    assert reason["code"] == 40000 and reason["statusCode"] == 400 and "'rewnd'" in reason["message"]
    assert result["errorReason"] == reason  # channel.errorReason shows it too


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_rewind_after_the_home_is_killed(tmp_path: Path, transport: str) -> None:
    frontends = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))
    async with run_cluster(tmp_path / "cluster", frontends=frontends) as cluster:
        port = int(cluster.router_url().rsplit(":", 1)[1])
        channel = "rw:failover"
        base = {"channel": channel, "transports": TRANSPORTS[transport], "key": CLUSTER_KEY}
        first = await rewind_run(tmp_path, port, publish=10, **base)
        home = await cluster.home_of(channel)
        await cluster.kill(home)
        await cluster.wait_converged(dead=[home])
        result = await rewind_run(tmp_path, port, params={"rewind": "5"}, expect=5, **base)
    check_rewound(result, first["serials"], 5)

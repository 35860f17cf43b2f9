"""channel.history() with the real npm ``ably`` under Node, while publishing goes on.

``untilAttach: true`` (RTL10b) pages back from the attach point: the history pages and what the
subscription delivers after the attach are, together, every ACKed message once, in order (no
gap, no overlap). On a memory-only channel and on a persisted one (SQLite), over WebSocket and
Comet; with rewind, where the rewound messages count as delivered, not as history; and through the
router of a real cluster after the channel's home was killed with SIGKILL, where history holds
what the old home numbered as well (memory-only, and persisted on a real PostgreSQL).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop._harness import API_KEY, node_script, run_frontend
from tests.support.cluster import run_cluster
from tests.support.postgres import running_postgres
from tests.support.procs import API_KEY as CLUSTER_KEY

pytestmark = pytest.mark.interop

TRANSPORTS = {"web_socket": ["web_socket"], "comet": ["comet"]}


async def history_run(tmp: Path, port: int, **config: Any) -> dict[str, Any]:
    with trio.fail_after(60):
        async with node_script(tmp, "history.mjs", {"port": port, "key": API_KEY, **config}) as script:
            return await script.expect("result")


def check_no_gap_no_overlap(result: dict[str, Any]) -> None:
    acked, delivered = result["acked"], result["delivered"]
    history = list(reversed(result["history"]))
    assert history + delivered == acked, (len(history), len(delivered), len(acked))
    assert history and delivered  # the attach really was mid-stream
    assert result["logErrors"] == []


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("channel", ["mem:until", "p:until"])
async def test_until_attach_while_publishing(tmp_path: Path, transport: str, channel: str) -> None:
    config = {"history_store": f"sqlite:{tmp_path / 'h.sqlite3'}", "channels": {"p:*": {"persist": "1h"}}}
    async with run_frontend(tmp_path, **config) as fe:
        result = await history_run(
            tmp_path, fe.port, channel=channel, transports=TRANSPORTS[transport], before=25, after=25
        )
    check_no_gap_no_overlap(result)
    assert result["pages"] > 1  # limit 7: paged through Link headers
    assert result["history"][0] == result["attachSerial"]


async def test_until_attach_with_rewind(tmp_path: Path) -> None:
    async with run_frontend(tmp_path) as fe:
        result = await history_run(tmp_path, fe.port, channel="mem:rewind", params={"rewind": "5"})
    check_no_gap_no_overlap(result)
    assert len(result["delivered"]) >= 5


@pytest.mark.parametrize(
    ("transport", "store"), [("web_socket", None), ("comet", None), ("web_socket", "postgresql")]
)
async def test_until_attach_while_publishing_after_the_home_is_killed(
    tmp_path: Path, transport: str, store: str | None
) -> None:
    # Two per zone: after the kill the new home still has a replica in the other zone, so
    # publishing goes on (an ACK waits for one).
    frontends = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"), ("fe-b2", "b"))
    with contextlib.ExitStack() as stack:
        config: dict[str, Any] = {}
        channel = "mem:until-failover"
        if store == "postgresql":  # a persisted channel: history is read from the shared store
            dsn = stack.enter_context(running_postgres(tmp_path / "pg"))
            config = {"history_store": dsn, "channels": {"p:*": {"persist": "1h"}}}
            channel = "p:until-failover"
        result, first = await _until_attach_after_kill(tmp_path, frontends, channel, transport, config)
    _check_across_the_kill(result, first)


async def _until_attach_after_kill(
    tmp_path: Path, frontends: Any, channel: str, transport: str, config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    async with run_cluster(tmp_path / "cluster", frontends=frontends, **config) as cluster:
        port = int(cluster.router_url().rsplit(":", 1)[1])
        base = {"channel": channel, "key": CLUSTER_KEY, "transports": TRANSPORTS[transport]}
        with trio.fail_after(40):
            async with node_script(tmp_path, "rewind.mjs", {"port": port, "publish": 12, **base}) as script:
                first = await script.expect("published")
        home = await cluster.home_of(channel)
        await cluster.kill(home)
        await cluster.wait_converged(dead=[home])
        result = await history_run(tmp_path, port, before=15, after=15, **base)
    return result, first


def _check_across_the_kill(result: dict[str, Any], first: dict[str, Any]) -> None:
    history = list(reversed(result["history"]))
    # History reaches back across the kill; with what the subscription delivered it is every ACKed
    # message once, in order.
    assert history + result["delivered"] == first["serials"] + result["acked"], (
        len(history),
        len(result["delivered"]),
        len(result["acked"]),
    )
    assert result["delivered"] and result["pages"] > 1
    assert result["history"][0] == result["attachSerial"]
    assert result["logErrors"] == []

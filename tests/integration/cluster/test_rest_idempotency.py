"""Idempotent publish survives a kill -9 of the channel's home, over REST and realtime.

A REST publish with a client-supplied id, and a realtime (trio SDK) publish with another, are
numbered by the home; the home is killed with SIGKILL; the same ids are published again, over
REST through another frontend and over realtime on a new connection: each answer carries the
original serial, and history shows each message once (the dedupe record travelled with the log
to the replica that became home).
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

import continuity
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY
from tests.support.rest import rest_call

CHANNEL = "rest:dedupe-failover"


async def home_of(cluster: LocalCluster, channel: str) -> str:
    for fe in cluster.frontends:
        if fe.running and channel in (await fe.get_json("/cluster"))["channels"]["home"]:
            return fe.name
    raise AssertionError(f"no running frontend is home of {channel}")


async def realtime_publish(url: str, message_id: str, data: str) -> list[str | None]:
    async with continuity.connect(url, key=API_KEY) as conn:
        msg = continuity.OutboundMessage(name="rt", data=data, id=message_id)
        return await conn.channel(CHANNEL).publish([msg])


async def test_ids_are_deduplicated_after_the_home_is_killed(tmp_path: Path) -> None:
    body = json.dumps({"name": "rest", "data": "first", "id": "rest-id-1"}).encode()
    again = json.dumps({"name": "rest", "data": "second", "id": "rest-id-1"}).encode()
    with trio.fail_after(60):
        async with run_cluster(tmp_path / "cluster") as cluster:
            fronts = cluster.frontends
            status, first = await rest_call(fronts[0].port, "POST", f"/channels/{CHANNEL}/messages", body)
            assert status == 201, first
            rt_first = await realtime_publish(fronts[1].url, "rt-id-1", "first")
            home = await home_of(cluster, CHANNEL)
            await cluster.kill(home)
            await cluster.wait_converged(dead=[home])
            alive = [fe for fe in fronts if fe.running]
            status, second = await rest_call(alive[0].port, "POST", f"/channels/{CHANNEL}/messages", again)
            assert status == 201, second
            rt_second = await realtime_publish(alive[-1].url, "rt-id-1", "second")
            status, history = await rest_call(alive[1].port, "GET", f"/channels/{CHANNEL}/messages")
            assert status == 200
    assert second["serials"] == first["serials"], (first, second)
    assert rt_second == rt_first
    assert [(m["id"], m["data"]) for m in history] == [("rt-id-1", "first"), ("rest-id-1", "first")]

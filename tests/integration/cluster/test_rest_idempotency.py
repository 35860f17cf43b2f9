"""Idempotent publish survives a kill -9 of the channel's home, over REST and realtime; a signed
TokenRequest replayed to another frontend is refused.

A REST publish with a client-supplied id, and a realtime (trio SDK) publish with another, are
numbered by the home; the home is killed with SIGKILL; the same ids are published again, over
REST through another frontend and over realtime on a new connection: each answer carries the
original serial, and history shows each message once (the dedupe record travelled with the log
to the replica that became home).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio

import continuity
from frontend.tokens import request_mac
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY, KEY_NAME, KEY_SECRET
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


async def test_a_signed_token_request_is_refused_when_replayed_to_any_frontend(tmp_path: Path) -> None:
    request = {
        "keyName": KEY_NAME,
        "clientId": "carol",
        "timestamp": int(time.time() * 1000),
        "nonce": "replayed-nonce-0123456789",
    }
    request["mac"] = request_mac(KEY_SECRET, request)
    body = json.dumps(request).encode()
    path = f"/keys/{KEY_NAME}/requestToken"
    no_auth = {"authorization": "Bearer eA=="}  # a signed request needs no credentials
    with trio.fail_after(60):
        async with run_cluster(tmp_path / "cluster") as cluster:
            answers = [await rest_call(fe.port, "POST", path, body, no_auth) for fe in cluster.frontends]
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 1, answers
    issued = next(b for s, b in answers if s == 200)
    assert issued["clientId"] == "carol" and issued["token"].startswith("ctk1.")
    refused = [b["error"]["code"] for s, b in answers if s != 200]
    assert refused == [40105] * (len(answers) - 1), answers

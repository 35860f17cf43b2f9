"""Interop with PyPI ``ably`` 3.x realtime (asyncio), run in its own process."""

from __future__ import annotations

import re

import pytest
import trio

from tests.interop._harness import API_KEY, cut, python_script, run_frontend, start_tunnel

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("binary", [pytest.param(True, id="msgpack"), pytest.param(False, id="json")])
async def test_ably_python_pubsub_and_resume(tmp_path, binary):
    async with run_frontend(tmp_path) as frontend, trio.open_nursery() as nursery:
        tunnel = await start_tunnel(nursery, frontend.port)
        config = {
            "port": frontend.port,
            "tunnelPort": tunnel.port,
            "binary": binary,
            "key": API_KEY,
            "channel": "interop:python",
            "intervalMs": 15,
            "tail": 20,
        }
        with trio.fail_after(40):
            async with python_script(tmp_path, "ably_realtime.py", config) as script:
                await script.expect("ready")
                await cut(tunnel, 1.5)
                result = await script.expect("result")
        nursery.cancel_scope.cancel()

    # Basic pub/sub: one serial per publish, delivered with it, stamped by the server.
    serials = [s for r in result["results"] for s in r]
    assert [len(r) for r in result["results"]] == [1] * 5 and all(serials)
    pub_id = result["pubConnectionId"]
    assert [m["serial"] for m in result["basic"]] == serials
    assert [m["data"] for m in result["basic"]] == [{"i": i} for i in range(5)]
    for m in result["basic"]:
        assert m["connectionId"] == pub_id
        assert re.fullmatch(rf"{re.escape(pub_id)}:\d+:0", m["id"]), m["id"]

    # Resume: the same connectionId, the channel re-attached with RESUMED.
    log = result["log"]
    assert result["subIdAfter"] == result["subIdBefore"]
    states = [e["current"] for e in log if e["kind"] == "connection"]
    assert "disconnected" in states and states[-1] == "connected", states
    attached = [e for e in log if e["kind"] == "channel" and e["current"] == "attached"]
    assert len(attached) >= 2 and attached[0]["resumed"] is False
    assert all(e["resumed"] and e["reason"] is None for e in attached[1:]), attached
    conn = [e for e in log if e["kind"] == "connection"]
    away = next(e["sent"] for e in conn if e["current"] == "disconnected")
    assert conn[-1]["sent"] > away + 5, conn  # published while it was away
    # Every message exactly once, in order.
    assert result["acked"] == result["sent"]
    assert result["nums"] == list(range(result["sent"]))


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_ably_python_presence(tmp_path, binary):
    """ably-python's realtime presence: enter, update, leave, subscribe and get() (SYNC on attach)."""
    async with run_frontend(tmp_path) as fe:
        config = {"port": fe.port, "key": API_KEY, "binary": binary, "channel": "interop:py-presence"}
        with trio.fail_after(40):
            async with python_script(tmp_path, "ably_presence.py", config) as script:
                result = await script.expect("result")
    seen = result["seen"]
    assert [(e["action"], e["clientId"]) for e in seen["bob"]] == [
        ("enter", "alice"),
        ("enter", "bob"),
        ("update", "alice"),
        ("leave", "alice"),
    ]
    assert sorted((m["clientId"], m["action"]) for m in result["members"]) == [
        ("alice", "present"),
        ("bob", "present"),
    ]
    assert {m["clientId"]: m["data"] for m in result["members"]} == {
        "alice": {"mood": "ok"},
        "bob": "bob-data",
    }
    assert [m["clientId"] for m in result["after"]] == ["bob"]

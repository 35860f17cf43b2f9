"""Interop with the real npm ``ably`` package (pinned in package.json) under Node."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.interop._harness import (
    API_KEY,
    Frontend,
    Tunnel,
    make_jwt,
    node_script,
    run_frontend,
    scrape_metrics,
)

pytestmark = pytest.mark.interop

FORMATS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


@pytest.fixture
async def frontend(tmp_path: Path):
    async with run_frontend(tmp_path) as fe:
        yield fe


async def run_pubsub(tmp_path: Path, frontend: Frontend, *, sub_binary: bool, pub_binary: bool, **auth):
    config = {
        "port": frontend.port,
        "binary": sub_binary,
        "pubBinary": pub_binary,
        "channel": "interop:pubsub",
        "count": 5,
        **auth,
    }
    with trio.fail_after(20):
        async with node_script(tmp_path, "pubsub.mjs", config) as script:
            return await script.expect("result")


def check_pubsub(result: dict, *, client_id: str | None = None) -> None:
    assert not [e for e in result["logErrors"] if "90009" in e], result["logErrors"]
    assert result["attached"] == {"resumed": False, "reason": None}
    assert "subscribe" in result["modes"] and "publish" in result["modes"]
    serials = [s for r in result["results"] for s in r["serials"]]
    assert [len(r["serials"]) for r in result["results"]] == [1] * 5 + [2, 1]
    assert len(set(serials)) == len(serials) and all(serials)
    received = result["received"]
    assert [m["serial"] for m in received] == serials
    pub_id = result["pubConnectionId"]
    assert pub_id != result["subConnectionId"]
    for m in received:
        assert m["connectionId"] == pub_id
        assert re.fullmatch(rf"{re.escape(pub_id)}:\d+:\d+", m["id"]), m["id"]
        assert isinstance(m["timestamp"], int)
        assert m["clientId"] == client_id
    # msgSerials 0..6 in order; the batch is one ProtocolMessage with indexes 0 and 1.
    suffixes = [m["id"].split(":", 1)[1] for m in received]
    assert suffixes == [f"{i}:0" for i in range(5)] + ["5:0", "5:1", "6:0"]
    assert [m["data"] for m in received[:5]] == [{"i": i} for i in range(5)]
    assert [m["data"] for m in received[5:7]] == ["a", "b"]
    assert received[7]["data"] == {"buffer": "AAEC/f7/"}


@pytest.mark.parametrize(
    ("sub_binary", "pub_binary"),
    [(True, True), (False, False), (True, False), (False, True)],
    ids=["msgpack", "json", "msgpack-sub-json-pub", "json-sub-msgpack-pub"],
)
async def test_pubsub_with_ack_serials(tmp_path, frontend, sub_binary, pub_binary):
    result = await run_pubsub(tmp_path, frontend, sub_binary=sub_binary, pub_binary=pub_binary, key=API_KEY)
    check_pubsub(result)


@pytest.mark.parametrize("binary", FORMATS)
async def test_pubsub_with_jwt_from_auth_callback(tmp_path, frontend, binary):
    token = make_jwt(client_id="jwt-user", capability={"interop:*": ["publish", "subscribe"]})
    result = await run_pubsub(tmp_path, frontend, sub_binary=binary, pub_binary=binary, token=token)
    assert result["pubClientId"] == "jwt-user"
    check_pubsub(result, client_id="jwt-user")


async def run_resume(
    tmp_path: Path, frontend: Frontend, *, binary: bool, pub_via_tunnel: bool = False, blackhole: float = 0
):
    async with trio.open_nursery() as nursery:
        tunnel = Tunnel(frontend.port)
        await nursery.start(tunnel.serve)
        config = {
            "port": frontend.port,
            "tunnelPort": tunnel.port,
            "binary": binary,
            "key": API_KEY,
            "channel": "interop:resume",
            "intervalMs": 15,
            "tail": 20,
            "pubViaTunnel": pub_via_tunnel,
        }
        with trio.fail_after(30):
            async with node_script(tmp_path, "resume.mjs", config) as script:
                await script.expect("ready")
                if blackhole:
                    # Server-to-client bytes vanish first: publishes land, their ACKs are lost.
                    tunnel.blackhole()
                    await trio.sleep(blackhole)
                await tunnel.cut(1.5)
                result = await script.expect("result")
        nursery.cancel_scope.cancel()
    return result


def check_resume(result: dict) -> None:
    log = result["log"]
    # RTN15c6: the same connectionId after the cut.
    assert result["subIdAfter"] == result["subIdBefore"]
    states = [e["current"] for e in log if e["kind"] == "connection"]
    assert "disconnected" in states and states[-1] == "connected", states
    assert all(e["reason"] is None for e in log if e["kind"] == "connection" and e["current"] == "connected")
    # RTL3d + RTN15c6: attached -> attaching -> attached(resumed) after the cut.
    channel = [e for e in log if e["kind"] == "channel" and e["current"] == "attached"]
    assert len(channel) >= 2, log
    assert channel[0]["resumed"] is False
    assert all(e["resumed"] is True and e["reason"] is None for e in channel[1:]), channel
    # Messages were published while the subscriber was away...
    marks = [e for e in log if e["kind"] == "mark" and e["what"] == "sub-connection"]
    away = next(e["sent"] for e in marks if e["state"] == "disconnected")
    back = marks[-1]["sent"]
    assert marks[-1]["state"] == "connected"
    assert back > away + 5, marks
    # ...and every message, all ACKed, arrived exactly once, in order.
    assert result["acked"] == result["sent"]
    assert result["nums"] == list(range(result["sent"]))
    assert not [e for e in result["logErrors"] if "90009" in e]


@pytest.mark.parametrize("binary", FORMATS)
async def test_resume_across_a_cut(tmp_path, frontend, binary):
    result = await run_resume(tmp_path, frontend, binary=binary)
    check_resume(result)


@pytest.mark.parametrize("binary", FORMATS)
async def test_resume_with_the_publisher_cut_too(tmp_path, frontend, binary):
    """RTN19a: publishes whose ACKs were lost are re-sent on resume, re-ACKed and published once."""
    result = await run_resume(tmp_path, frontend, binary=binary, pub_via_tunnel=True, blackhole=0.3)
    assert result["pubIdAfter"] == result["pubIdBefore"]
    check_resume(result)
    metrics = await scrape_metrics(frontend.port)
    assert metrics['continuity_resumes_total{result="ok"}'] >= 2
    assert metrics.get('continuity_resumes_total{result="failed"}', 0) == 0
    assert metrics["continuity_duplicate_publishes_total"] > 0  # the re-sends were deduped

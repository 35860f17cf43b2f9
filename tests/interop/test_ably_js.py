"""Interop with the real npm ``ably`` package (pinned in package.json) under Node."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.interop._harness import API_KEY, cut, make_jwt, node_script, run_frontend, start_tunnel
from tests.support.procs import FrontendProcess

pytestmark = pytest.mark.interop

FORMATS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


@pytest.fixture
async def frontend(tmp_path: Path):
    async with run_frontend(tmp_path) as fe:
        yield fe


async def run_pubsub(
    tmp_path: Path, frontend: FrontendProcess, *, sub_binary: bool, pub_binary: bool, **auth
):
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
    tmp_path: Path, frontend: FrontendProcess, *, binary: bool, pub_via_tunnel: bool = False, hold: float = 0
):
    async with trio.open_nursery() as nursery:
        tunnel = await start_tunnel(nursery, frontend.port)
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
                if hold:
                    # Server-to-client bytes stall first, then the cut drops them:
                    # publishes land, their ACKs are lost.
                    tunnel.hold()
                    await trio.sleep(hold)
                    tunnel.cut(1.5)
                    tunnel.release()  # for the connections after the cut
                    await trio.sleep(1.5)
                else:
                    await cut(tunnel, 1.5)
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
    result = await run_resume(tmp_path, frontend, binary=binary, pub_via_tunnel=True, hold=0.3)
    assert result["pubIdAfter"] == result["pubIdBefore"]
    check_resume(result)
    metrics = await frontend.metrics()
    assert metrics['continuity_resumes_total{result="ok"}'] >= 2
    assert metrics.get('continuity_resumes_total{result="failed"}', 0) == 0
    assert metrics["continuity_duplicate_publishes_total"] > 0  # the re-sends were deduped


async def run_recover(
    tmp_path: Path,
    frontend: FrontendProcess,
    *,
    binary: bool,
    forge: str | None = None,
    then_genuine: bool = False,
):
    """Old instance: receive 1..3 and print its recovery key; killed. Then 4..8 are published;
    a new instance recovers, attaches and gets the sentinel 9 and its own message 10.

    With ``forge`` the new instance uses a forged key; with ``then_genuine`` a third
    instance then recovers with the genuine key (its result is ``result["genuine"]``)."""
    base = {"port": frontend.port, "binary": binary, "key": API_KEY, "channel": "interop:recover"}
    base |= {"before": 3, "away": 5}
    with trio.fail_after(25):
        async with node_script(tmp_path, "recover.mjs", {**base, "role": "old"}) as old:
            key = await old.expect("recoveryKey")
            old.kill()  # a crash: the server sees the socket drop, never a CLOSE
            await old.proc.wait()
        assert key["nums"] == [1, 2, 3]
        config = {**base, "role": "new", "recoveryKey": key["key"], "forge": forge}
        async with node_script(tmp_path, "recover.mjs", config) as new:
            result = await new.expect("result")
        if then_genuine:
            async with node_script(tmp_path, "recover.mjs", {**config, "forge": None}) as genuine:
                result["genuine"] = await genuine.expect("result")
    return key, result


@pytest.mark.parametrize("binary", FORMATS)
async def test_recover_in_a_new_instance(tmp_path, frontend, binary):
    key, result = await run_recover(tmp_path, frontend, binary=binary)
    # RTN16d: the same connectionId and no error.
    assert result["connectionId"] == key["connectionId"]
    assert result["errorReason"] is None
    assert result["attached"] == {"resumed": True, "reason": None}
    # Published while away: delivered exactly once, in order; nothing from before the key.
    assert [m["data"]["n"] for m in result["received"]] == list(range(4, 11))
    own = result["received"][-1]
    assert own["connectionId"] == key["connectionId"]
    assert own["serial"] == result["own"]["serials"][0]
    assert not [e for e in result["logErrors"] if "90009" in e]


def check_forged(key: dict, result: dict) -> None:
    # RTN15c7/RTN16l: a new connectionId, with 80018 as the error.
    assert result["errorReason"]["code"] == 80018
    assert result["connectionId"] != key["connectionId"]
    # The failed recover reset msgSerial: our own publish is the new connection's 0.
    own = result["received"][-1]
    assert own["id"] == f"{result['connectionId']}:0:0"
    # The victim's state was not touched: the genuine key still recovers it.
    genuine = result["genuine"]
    assert genuine["connectionId"] == key["connectionId"]
    assert genuine["errorReason"] is None
    assert genuine["attached"] == {"resumed": True, "reason": None}


@pytest.mark.parametrize("binary", FORMATS)
async def test_forged_recovery_key(tmp_path, frontend, binary):
    """A forged key (connectionKey MAC altered, channel serials from an unknown epoch):
    80018, a new connectionId, and ATTACHED without RESUMED carrying 90003."""
    key, result = await run_recover(tmp_path, frontend, binary=binary, forge="all", then_genuine=True)
    check_forged(key, result)
    attached = result["attached"]
    assert attached["resumed"] is False
    assert (attached["reason"]["code"], attached["reason"]["statusCode"]) == (90003, 404)
    # No continuity: delivery starts from now (the sentinel and our own message).
    assert [m["data"]["n"] for m in result["received"]] == [9, 10]


@pytest.mark.parametrize("binary", FORMATS)
async def test_forged_connection_key_with_genuine_channel_serials(tmp_path, frontend, binary):
    """Only the connectionKey forged: the connection fails (80018, new id), but channel
    continuity is per channel (PROTOCOL 3.5): the genuine channelSerial still resumes the
    channel, exactly once. Serials are not secrets; the capability gates the channel."""
    key, result = await run_recover(tmp_path, frontend, binary=binary, forge="key", then_genuine=True)
    check_forged(key, result)
    assert result["attached"] == {"resumed": True, "reason": None}
    assert [m["data"]["n"] for m in result["received"]] == list(range(4, 11))

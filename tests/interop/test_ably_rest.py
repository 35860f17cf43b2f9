"""The Ably REST surface with the real ably-js ``Rest`` against a real 4-frontend cluster.

- fanout: REST publishes through the router reach realtime subscribers on every frontend once,
  in order (single, arrays, batch, binary, extras, clientId, both formats); re-published ids are
  answered with the same serials and delivered once; publish on behalf of a connection owned by
  another frontend carries its connectionId; capability and credential refusals carry their codes.
- a dropped response: a raw POST whose client closes before the answer, then the SDK publishes
  the same ids through another frontend: delivered once. Malformed bodies get 40001 and are counted.
- tokens: authCallback -> createTokenRequest() with a short ttl expires mid-stream (40142, renewed,
  same connectionId, nothing lost); authUrl -> TokenRequest, renewed by authorize() before expiry;
  an expired token on REST is refused with 40142.
- history: paging backwards across a kill -9 of the channel's home: every message once, in order.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

from tests.interop._harness import node_script
from tests.support.cluster import LocalCluster, run_cluster
from tests.support.procs import API_KEY
from tests.support.rest import metric, rest_call

pytestmark = pytest.mark.interop

EXPECTED = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "end"]


def router_port(cluster: LocalCluster) -> int:
    return int(cluster.router_url().rsplit(":", 1)[1])


async def home_of(cluster: LocalCluster, channel: str) -> str:
    for fe in cluster.frontends:
        if fe.running and channel in (await fe.get_json("/cluster"))["channels"]["home"]:
            return fe.name
    raise AssertionError(f"no running frontend is home of {channel}")


def serial_seq(serial: str) -> int:
    return int(serial.rsplit(":", 1)[1])


async def test_rest_publish_reaches_realtime_subscribers_on_every_frontend(tmp_path: Path) -> None:
    channel, channel2 = "rest:fanout", "rest:fanout2"
    with trio.fail_after(90):
        async with run_cluster(tmp_path / "cluster") as cluster:
            ports = [fe.port for fe in cluster.frontends]
            config = {
                "scenario": "fanout",
                "port": router_port(cluster),
                "ports": ports,
                "key": API_KEY,
                "channel": channel,
                "channel2": channel2,
            }
            async with node_script(tmp_path, "rest.mjs", config) as script:
                published = await script.expect("published")
                refusals = {}
                for _ in range(5):
                    ev = await script.expect("refusal")
                    refusals[ev["what"]] = ev["error"]
                received = await script.expect("received")

            # A lost response: the client closes before reading the answer, then retries elsewhere.
            body = json.dumps(
                [{"name": "lost-0", "id": "lostbase:0"}, {"name": "lost-1", "id": "lostbase:1"}]
            )
            await rest_call(ports[2], "POST", f"/channels/{channel}/messages", body.encode(), read=False)
            status, first = await rest_call(ports[3], "POST", f"/channels/{channel}/messages", body.encode())
            assert status == 201, first
            status, again = await rest_call(ports[0], "POST", f"/channels/{channel}/messages", body.encode())
            assert status == 201 and again is not None and first is not None
            assert again["serials"] == first["serials"], (first, again)
            status, hist = await rest_call(ports[1], "GET", f"/channels/{channel}/messages?limit=5")
            assert status == 200 and isinstance(hist, list)
            assert [m["name"] for m in hist].count("lost-0") == 1, hist

            # Malformed bodies: their error, counted, and the frontend keeps serving.
            before = await metric(ports[1], "continuity_rest_requests_total", 'code="40001"')
            for bad in (b"{not json", b"42", b'[{"name": 5}]'):
                status, err = await rest_call(ports[1], "POST", f"/channels/{channel}/messages", bad)
                assert status == 400 and err is not None and err["error"]["code"] == 40001, err
            after = await metric(ports[1], "continuity_rest_requests_total", 'code="40001"')
            assert after - before == 3
            status, err = await rest_call(
                ports[1],
                "POST",
                "/keys/app.key/requestToken",
                b'{"keyName":"app.key","nonce":"0123456789abcdef","timestamp":1,"mac":"x"}',
                {"authorization": "Bearer eA=="},
            )
            assert status == 401 and err is not None and err["error"]["code"] == 40101, err

    subs = received["subs"]
    for i, got in enumerate(subs):
        names = [m["name"] for m in got]
        assert names == EXPECTED, f"subscriber {i} on {ports[i]}: {names}"
        seqs = [serial_seq(m["serial"]) for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        by = {m["name"]: m for m in got}
        assert by["m2"]["data"] == {"bin": [1, 2, 3]} and by["m1"]["data"] == {"json": True}
        assert by["m3"]["clientId"] == "alice" and by["m3"]["extras"] == {"headers": {"k": "v"}}
        assert by["m4"]["id"] == "explicit-id-4" and by["m5"]["id"] == "fixedbase:0"
        assert by["m8"]["connectionId"] == published["sub0"], by["m8"]
    assert [m["name"] for m in received["other"]] == ["m7", "end"]
    results = published["results"]
    assert results[3]["serials"] == results[4]["serials"]  # the re-published id: same serial
    assert published["realtimeDup"]["serials"] == results[3]["serials"]  # and over realtime
    assert results[5]["serials"] == results[6]["serials"]  # the re-published atomic batch
    assert len(results[1]["serials"]) == 2
    batch = published["batch"]
    assert batch[0]["successCount"] == 2 and batch[0]["failureCount"] == 0, batch
    assert received["status"]["status"]["occupancy"]["metrics"]["subscribers"] == len(ports)
    assert refusals["publish"]["code"] == 40160 and refusals["publish"]["statusCode"] == 401
    assert refusals["history"]["code"] == 40160
    assert refusals["other-channel"]["code"] == 40160
    assert refusals["clientId"]["code"] == 40012
    assert refusals["wrong-secret"]["code"] == 40101


@pytest.mark.parametrize("lane", ["web_socket", "comet"])
async def test_token_flows_expiry_and_renewal_keep_the_connection(tmp_path: Path, lane: str) -> None:
    with trio.fail_after(90):
        async with run_cluster(tmp_path / "cluster") as cluster:
            config = {
                "scenario": "tokens",
                "port": router_port(cluster),
                "key": API_KEY,
                "channel": "rest:tokens",
                "ttl": 4000,
                "transports": [lane],
            }
            async with node_script(tmp_path, "rest.mjs", config) as script:
                connected = await script.expect("connected")
                refusal = await script.expect("refusal")
                done = await script.expect("done")
    assert connected["clientIds"] == {"callback": "cb-user", "url": "url-user"}
    assert connected["transports"] == [lane, lane]
    for name in ("callback", "url"):
        assert done["got"][name] == list(range(done["n"])), f"{name}: {done['got'][name]}"
        assert done["finalIds"][name] == done["ids"][name], done["states"][name]
        # Never a new connection: any DISCONNECTED is followed by a resume under the same id.
        assert all(s.get("id") in (done["ids"][name], None) for s in done["states"][name]), done["states"][
            name
        ]
    # The callback token (ttl 4 s) expired mid-stream: the server said 40142 and the SDK renewed.
    codes = [s["code"] for s in done["states"]["callback"] if s["current"] == "disconnected"]
    assert 40142 in codes, done["states"]["callback"]
    assert done["callbacks"] >= 2
    # The authUrl client renewed by AUTH before expiry: no disconnection at all.
    assert done["renewedToken"] and not [s for s in done["states"]["url"] if s["current"] == "disconnected"]
    assert refusal["what"] == "expired" and refusal["error"]["code"] in (40142, 40171), refusal


@pytest.mark.parametrize("binary", [True, False])
async def test_history_pages_across_a_home_kill(tmp_path: Path, binary: bool) -> None:
    channel = f"rest:history:{binary}"
    count, limit = 40, 15
    with trio.fail_after(90):
        async with run_cluster(tmp_path / "cluster") as cluster:
            config = {
                "scenario": "history",
                "port": router_port(cluster),
                "key": API_KEY,
                "channel": channel,
                "count": count,
                "limit": limit,
                "binary": binary,
            }
            async with node_script(tmp_path, "rest.mjs", config) as script:
                page1 = await script.expect("page1")
                home = await home_of(cluster, channel)
                await cluster.kill(home)
                await cluster.wait_converged(dead=[home])
                script.proc.send_signal(signal.SIGUSR2)
                pages = await script.expect("pages")
    assert page1["hasNext"] and [d for d, _ in page1["items"]] == list(
        range(count - 1, count - 1 - limit, -1)
    )
    everything = [d for page in pages["pages"] for d, _ in page]
    assert everything == list(range(count - 1, -1, -1)), pages
    assert [len(p) for p in pages["pages"]] == [15, 15, 10]
    epochs = {s.rsplit(":", 1)[0] for page in pages["pages"] for _, s in page}
    assert len(epochs) == 1, f"the epoch changed across the home kill: {epochs}"
    assert pages["forwards"] == list(range(count))

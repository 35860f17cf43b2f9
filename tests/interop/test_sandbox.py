"""The dev-mode sandbox (``POST /apps``) with the real ably-js, through a router, on both transports.

A test app is provisioned through the router with ably-common's key spec; ably-js then uses one of
its keys against another frontend directly and through the router, over WebSocket and Comet: the
key carries exactly the capability asked (the refusals come from the server), and a wrong secret
fails the connection with 40101. Outside dev mode ``/apps`` answers 404.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.interop._harness import node_script, run_frontend
from tests.support.cluster import LocalCluster, run_cluster

pytestmark = pytest.mark.interop

SPEC = {
    "keys": [
        {},
        {"capability": '{ "cansubscribe:*":["subscribe"], "canpublish:*":["publish"] }'},
    ],
    "namespaces": [{"id": "persisted", "persisted": True}],
    "channels": [],
}


async def http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        await stream.send_all(head.encode() + body)
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), payload


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    frontends = (("fe-a1", "a"), ("fe-b1", "b"))
    async with run_cluster(tmp_path / "cluster", frontends=frontends, dev=True) as c:
        yield c


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("transport", ["web_socket", "comet"])
async def test_sandbox_keys_carry_their_capability_on_every_frontend(
    tmp_path: Path, cluster: LocalCluster, transport: str
) -> None:
    router = port_of(cluster.router_url())
    with trio.fail_after(60):
        status, body = await http(router, "POST", "/apps", json.dumps(SPEC).encode())
        assert status == 201, body
        app = json.loads(body)
        assert (app["endpoint"], app["port"], app["tls"]) == ("127.0.0.1", router, False)
        key = app["keys"][1]["keyStr"]
        for port in (router, *(n.port for n in cluster.frontends)):
            config = {"port": port, "key": key, "transports": [transport]}
            async with node_script(tmp_path, "sandbox.mjs", config) as script:
                result = await script.expect("result")
            assert result["subscribeAttach"] == {"ok": True, "value": "attached"}
            assert result["publishWhereSubscribeOnly"]["error"]["code"] == 40160
            assert result["publishWherePermitted"] == {"ok": True, "value": 1}
            assert result["attachWithoutCapability"]["error"]["code"] == 40160
            assert result["connectionState"] == "connected"
            assert result["forged"]["state"] == "failed"
            assert result["forged"]["reason"]["code"] == 40101


async def test_sandbox_is_absent_outside_dev_mode(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with run_frontend(tmp_path) as fe:
            status, _ = await http(fe.port, "POST", "/apps", json.dumps(SPEC).encode())
            assert status == 404
            status, _ = await http(fe.port, "DELETE", "/apps/sbx0123456789")
            assert status == 404

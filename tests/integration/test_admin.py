"""Admin surfaces: a separate admin listener and/or a bearer token; readiness-grade /health and a
separate /livez, on in-process routers and frontends."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from frontend.admin import FrontendAdmin
from frontend.config import FrontendConfig
from frontend.http import serve as serve_frontend
from frontend.node import FrontendNode
from kernel.placement import ClusterView, Peer
from router.cluster import ClusterMap
from router.config import RouterConfig
from router.server import Router, serve

pytestmark = pytest.mark.integration

SECRET = "integration-cluster-secret-0123456789"
TOKEN = "an-admin-token-long-enough-0123456789"
TIMEOUT = 10
SAME_SHAPE = {"node_id", "zone", "role", "state", "ready", "draining", "connections", "members"}


async def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes, bytes]:
    """(status, status line, body) of one GET on a fresh connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    top, _, body = raw.partition(b"\r\n\r\n")
    line = top.split(b"\r\n", 1)[0]
    return int(line.split(b" ")[1]), line, body


def _view(*peers: Peer) -> ClusterMap:
    return ClusterMap(ClusterView({p.node_id: p for p in peers}))


async def _router(nursery: trio.Nursery, cluster: ClusterMap | None = None, **config: Any) -> Router:
    router = Router(RouterConfig(port=0, cluster_secret=SECRET, **config), cluster or ClusterMap())
    await nursery.start(serve, router)
    return router


async def test_router_admin_listener_serves_what_the_public_port_does_not(nursery: trio.Nursery) -> None:
    router = await _router(nursery, admin_port=0)
    assert router.port is not None and router.admin_port is not None
    with trio.fail_after(TIMEOUT):
        for path in ("/dashboard/", "/dashboard/state.json", "/cluster", "/metrics", "/admin/members",
                     "/debug/connections/x"):
            status, line, body = await get(router.port, path)
            assert status == 404, path
            assert b"served on the admin listener only" in body, path
        for path in ("/dashboard/", "/dashboard/state.json", "/cluster", "/metrics"):
            status, line, _ = await get(router.admin_port, path)
            assert (status, line) == (200, b"HTTP/1.1 200 OK"), path
        status, _, _ = await get(router.port, "/demo/")  # the public pages stay public
        assert status == 200
        status, _, _ = await get(router.admin_port, "/demo/")  # and the admin port serves no clients
        assert status == 404


async def test_router_admin_token(nursery: trio.Nursery) -> None:
    router = await _router(nursery, admin_token=TOKEN)
    assert router.port is not None
    with trio.fail_after(TIMEOUT):
        for path in ("/cluster", "/metrics", "/dashboard/state.json"):
            status, line, body = await get(router.port, path)
            assert (status, line) == (401, b"HTTP/1.1 401 Unauthorized"), path
            assert json.loads(body)["error"]["code"] == 40100
            assert (await get(router.port, path, "wrong-token-wrong-token"))[0] == 401
            assert (await get(router.port, path, TOKEN))[0] == 200


async def test_router_health_is_readiness(nursery: trio.Nursery) -> None:
    fe = Peer(node_id="fe1", role="frontend", zone="a", client_addr="127.0.0.1:1")
    cases = [
        (ClusterMap(), 503, "no_frontend"),
        (_view(fe), 200, "ok"),
        (_view(dataclasses.replace(fe, active=False)), 503, "no_frontend"),  # draining
        (_view(dataclasses.replace(fe, alive=False)), 503, "no_frontend"),  # dead
    ]
    with trio.fail_after(TIMEOUT):
        for cluster, want, status_text in cases:
            router = await _router(nursery, cluster)
            assert router.port is not None
            status, _, body = await get(router.port, "/health")
            assert (status, json.loads(body)["status"]) == (want, status_text)
            assert (await get(router.port, "/livez"))[0] == 200


async def _frontend(nursery: trio.Nursery, tmp_path: Path, **config: Any) -> tuple[int, int | None]:
    port_file = tmp_path / f"fe-{random.random()}.port"
    cfg = FrontendConfig(port=0, dev=True, port_file=str(port_file), **config)
    await nursery.start(serve_frontend, FrontendNode(cfg, rng=random.Random(1)))
    ports = [int(p) for p in port_file.read_text().split()]
    return ports[0], (ports[1] if len(ports) > 1 else None)


async def test_frontend_admin_listener(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, admin = await _frontend(nursery, tmp_path, admin_port=0)
    assert admin is not None
    with trio.fail_after(TIMEOUT):
        for path in ("/cluster", "/metrics", "/debug/connections/x"):
            assert (await get(port, path))[0] == 404, path
            assert (await get(admin, path))[0] == 200, path
        assert (await get(port, "/health"))[0] == (await get(admin, "/health"))[0] == 200
        _, _, body = await get(admin, "/cluster")
        router = await _router(nursery)
        assert router.port is not None
        _, _, router_body = await get(router.port, "/cluster")
        assert SAME_SHAPE <= set(json.loads(body)) and SAME_SHAPE <= set(json.loads(router_body))
        assert isinstance(json.loads(router_body)["members"], list)


async def test_frontend_admin_token(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _ = await _frontend(nursery, tmp_path, admin_token=TOKEN)
    with trio.fail_after(TIMEOUT):
        assert (await get(port, "/cluster"))[0] == 401
        assert (await get(port, "/cluster", TOKEN))[0] == 200
        assert (await get(port, "/health"))[0] == 200  # health needs no token


def test_frontend_readiness_states() -> None:
    node = FrontendNode(FrontendConfig(dev=True), rng=random.Random(1))
    assert FrontendAdmin(node, None).readiness() == "ready"  # standalone: numbers at once
    cluster: Any = SimpleNamespace(draining=False, member=None)
    admin = FrontendAdmin(node, cluster)
    node.channels.ready = False
    assert admin.readiness() == "joining"  # not joined: cannot number publishes
    cluster.member = object()
    assert admin.readiness() == "joining"  # joined, map not settled: still cannot number
    node.channels.ready = True
    assert admin.readiness() == "ready"
    status, _, body = admin.health()
    assert status == 200 and json.loads(body)["ready"] is True
    cluster.draining = True
    assert admin.readiness() == "draining"
    status, _, body = admin.health()
    assert status == 503 and json.loads(body)["status"] == "draining"
    assert admin.livez()[0] == 200


async def test_router_admin_token_as_basic_auth_for_a_browser(nursery: trio.Nursery) -> None:
    import base64

    router = await _router(nursery, admin_token=TOKEN)
    assert router.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        async with stream:
            await stream.send_all(b"GET /dashboard/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert b'\r\nwww-authenticate: Basic realm="Continuity admin"' in raw
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        for auth, want in ((f"Basic {basic}", 200), ("Basic !!!", 401),
                           (f"Basic {base64.b64encode(b'anyone:wrong').decode()}", 401)):
            stream = await trio.open_tcp_stream("127.0.0.1", router.port)
            async with stream:
                await stream.send_all(f"GET /dashboard/ HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n"
                                      "connection: close\r\n\r\n".encode())
                head = await stream.receive_some(65536)
            assert head.startswith(f"HTTP/1.1 {want} ".encode()), (auth, head[:40])

"""The router's own pages (router/static.py) served by an in-process router: the demo and dashboard
files, the vendored ably-js build, the demo token endpoint, and the tunnel hook, which exists only
in dev mode and, when on, closes a covered client's requests unanswered."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio

from frontend.auth import FULL_CAPABILITY, ApiKey, Authenticator
from router.cluster import ClusterMap
from router.config import RouterConfig
from router.server import Router, serve
from tests.support.procs import http_get

pytestmark = pytest.mark.integration

SECRET = "integration-demo-secret-0123456789abcdef"
DEMO_KEY = f"demo.browser:{SECRET}"
TIMEOUT = 10


async def start(nursery: trio.Nursery, **config: Any) -> int:
    cfg = RouterConfig(port=0, cluster_secret="integration-cluster-secret-0123456789", **config)
    port: int = await nursery.start(serve, Router(cfg, ClusterMap()))
    return port


async def request(port: int, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body); (0, {}, b"") if closed unanswered."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = f"{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        await stream.send_all(head.encode())
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    if not raw:
        return 0, {}, b""
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


async def test_pages_and_the_vendored_ably_build(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    with trio.fail_after(TIMEOUT):
        status, headers, body = await request(port, "GET", "/demo/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"/vendor/ably.min.js" in body and b"/demo/demo.js" in body
        status, headers, body = await request(port, "GET", "/dashboard/dashboard.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert b"/dashboard/state.json" in body
        status, headers, _ = await request(port, "GET", "/demo")
        assert (status, headers["location"]) == (301, "/demo/")
        status, _, body = await request(port, "GET", "/vendor/ably.min.js")
        assert status == 200 and len(body) > 100_000 and b"Ably" in body
        for bad in ("/demo/../router/config.py", "/demo/%2e%2e/static.py", "/assets/x.py", "/demo/nope.js"):
            status, _, body = await request(port, "GET", bad)
            assert status == 404, bad
            assert json.loads(body)["error"]["code"] == 40400


async def test_config_and_dashboard_state(nursery: trio.Nursery) -> None:
    port = await start(nursery, dev=True, demo_key=DEMO_KEY, node_id="rt9", zone="b")
    with trio.fail_after(TIMEOUT):
        status, body = await http_get("127.0.0.1", port, "/demo/config.json")
        assert status == 200
        config = json.loads(body)
        assert config["tunnel"] is True and config["auth"] is True and config["router"] == "rt9"
        assert config["channelPrefix"] == "demo:"
        status, body = await http_get("127.0.0.1", port, "/dashboard/state.json")
        state = json.loads(body)
        assert status == 200 and state["router"]["node_id"] == "rt9"
        assert state["members"] == [] and state["frontends"] == {}


async def test_demo_token_only_with_a_demo_key(nursery: trio.Nursery) -> None:
    without = await start(nursery)
    with_key = await start(nursery, demo_key=DEMO_KEY)
    with trio.fail_after(TIMEOUT):
        status, _, body = await request(without, "GET", "/demo/token?clientId=alice")
        assert status == 404 and "demo_key" in json.loads(body)["error"]["message"]
        status, _, body = await request(with_key, "GET", "/demo/token?clientId=%3Cscript%3E")
        assert status == 400 and json.loads(body)["error"]["code"] == 40012
        status, headers, body = await request(with_key, "GET", "/demo/token?clientId=alice")
        assert status == 200 and headers["content-type"] == "application/jwt"
    auth = Authenticator({"demo.browser": ApiKey("demo.browser", SECRET, FULL_CAPABILITY)})
    ident = auth.authenticate(int(time.time() * 1000), key=None, token=body.decode(), client_id=None)
    assert ident.client_id == "alice"


async def test_tunnel_hook_is_refused_outside_dev_mode(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    with trio.fail_after(TIMEOUT):
        status, _, body = await request(port, "POST", "/dev/tunnel?tag=t1&seconds=3")
        error = json.loads(body)["error"]
        assert status == 403 and error["code"] == 40300 and "dev mode" in error["message"]
        # ...and a tagged request is routed as usual (no map here: 503 answered, not cut).
        status, _, _ = await request(port, "GET", "/comet/connect?devtag=t1")
        assert status == 503


async def test_tunnel_hook_cuts_a_tagged_client_for_its_duration(nursery: trio.Nursery) -> None:
    port = await start(nursery, dev=True)
    with trio.fail_after(TIMEOUT):
        assert (await request(port, "GET", "/comet/connect?devtag=t1"))[0] == 503
        status, _, body = await request(port, "GET", "/dev/tunnel?tag=t1")
        assert status == 405
        status, _, body = await request(port, "POST", "/dev/tunnel?tag=t1&seconds=0.01")
        assert status == 400 and "seconds" in json.loads(body)["error"]["message"]
        status, _, body = await request(port, "POST", "/dev/tunnel?tag=t1&seconds=60")
        assert status == 200 and json.loads(body) == {
            "cut": 0,
            "seconds": 60.0,
            "connectionId": None,
            "tag": "t1",
        }
        assert await request(port, "GET", "/comet/connect?devtag=t1") == (0, {}, b"")  # closed, unanswered
        assert (await request(port, "GET", "/comet/connect?devtag=t2"))[0] == 503  # others unaffected


async def test_the_root_page_links_to_the_demo_and_the_dashboard(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    private = await start(nursery, admin_port=0)
    with trio.fail_after(TIMEOUT):
        status, headers, body = await request(port, "GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'href="/demo/"' in body and b'href="/dashboard/"' in body
        status, _, body = await request(private, "GET", "/")
        assert status == 200 and b'href="/demo/"' in body and b'href="/dashboard/"' not in body

"""The router daemon in front of real frontend processes (DESIGN 4).

Two standalone frontends run as processes. Until frontends join gossip themselves, gossip members
in this test process *advertise* them (name = the frontend's node_id, role frontend, zones a and b,
client address = the frontend's port), and a real ``python -m router`` process is seeded to those
members. Every client connects through the router only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import h11
import pytest
import trio

import continuity
import gossip
from continuity import ConnectionEvent, ConnectionState
from kernel.errors import ErrorCode
from kernel.placement import ClusterView, Peer
from kernel.protocol import Action
from router.cluster import ClusterMap
from router.config import RouterConfig
from router.server import Router, serve
from tests.support.procs import (
    API_KEY,
    REPO,
    FrontendProcess,
    http_get,
    parse_metrics,
    render_config,
    run_frontend,
)
from tests.support.raw import raw_connect
from tests.support.streams import FAST_BACKOFF, wait_until, wait_until_async

pytestmark = pytest.mark.integration

CLUSTER_SECRET = "integration-cluster-secret-0123456789"
FAST_CONFIG: dict[str, Any] = {
    "max_idle_interval_ms": 2_000,
    "connection_state_ttl_ms": 30_000,
    "cluster_secret": CLUSTER_SECRET,
}
ZONES = {"it-a1": "a", "it-b1": "b"}
START_TIMEOUT = 15.0


@dataclass
class RouterProcess:
    process: trio.Process
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def get(self, path: str) -> tuple[int, bytes]:
        return await http_get("127.0.0.1", self.port, path)

    async def cluster(self) -> list[dict[str, Any]]:
        status, body = await self.get("/cluster")
        assert status == 200
        result: list[dict[str, Any]] = json.loads(body)["members"]
        return result

    async def metrics(self) -> dict[str, float]:
        status, body = await self.get("/metrics")
        assert status == 200
        return parse_metrics(body.decode())


@asynccontextmanager
async def run_router(workdir: Path, **config: Any) -> AsyncIterator[RouterProcess]:
    """Start ``python -m router`` with ``config`` (RouterConfig fields) and yield it once healthy."""
    await trio.Path(workdir).mkdir(parents=True, exist_ok=True)
    port_file = workdir / "router.port"
    config_path = workdir / "router.toml"
    log_path = workdir / "router.log"
    merged = {
        "node_id": "it-r1",
        "port": 0,
        "port_file": str(port_file),
        "cluster_secret": CLUSTER_SECRET,
        "gossip_profile": "local",
        "connect_timeout_s": 1.0,
        **config,
    }
    await trio.Path(config_path).write_text(render_config(merged, {}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUITY_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = await trio.to_thread.run_sync(_open_log, log_path)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "router", "--config", str(config_path), "--log-level", "debug"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=env,
        )
    finally:
        log.close()
    try:
        with trio.fail_after(START_TIMEOUT):
            while not (text := _read(port_file)).endswith("\n"):
                if process.poll() is not None:
                    raise RuntimeError(f"router exited with {process.returncode}")
                await trio.sleep(0.02)
        yield RouterProcess(process=process, port=int(text), log_path=log_path)
    except BaseException:
        print(f"--- router log ({log_path}) ---\n{_read(log_path)[-8000:]}", file=sys.stderr)
        raise
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # handed to the child process; the caller closes it


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class Cluster:
    router: RouterProcess
    frontends: dict[str, FrontendProcess]
    advertisers: dict[str, gossip.Member] = field(default_factory=dict)

    def node_of(self, conn: continuity.Connection) -> str:
        server_id = str(conn.details.get("serverId", ""))
        assert server_id.startswith("continuity."), conn.details
        return server_id.removeprefix("continuity.")


@asynccontextmanager
async def advertise(
    name: str, fe: FrontendProcess, seeds: list[gossip.Address]
) -> AsyncIterator[gossip.Member]:
    """A gossip member that stands in for frontend ``name`` in the cluster map."""
    metadata = gossip.Metadata(
        role="frontend",
        zone=ZONES[name],
        addresses={"client": f"127.0.0.1:{fe.port}", "peer": ""},
        state=gossip.ServingState.ACTIVE,
    )
    async with gossip.open_member(
        gossip.GossipConfig.local(),
        bind=("127.0.0.1", 0),
        seeds=seeds,
        name=name,
        metadata=metadata,
        secret=CLUSTER_SECRET,
    ) as member:
        yield member


async def _map_shows(router: RouterProcess, alive: set[str]) -> bool:
    try:
        members = await router.cluster()
    except (OSError, ValueError, IndexError):
        return False
    live = {m["node_id"] for m in members if m["role"] == "frontend" and m["status"] in ("alive", "suspect")}
    return live == alive


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        frontends: dict[str, FrontendProcess] = {}
        for name, zone in ZONES.items():
            frontends[name] = await stack.enter_async_context(
                run_frontend(tmp_path / name, node_id=name, zone=zone, **FAST_CONFIG)
            )
        advertisers: dict[str, gossip.Member] = {}
        seeds: list[gossip.Address] = []
        for name, fe in frontends.items():
            advertisers[name] = await stack.enter_async_context(advertise(name, fe, seeds))
            seeds = [advertisers[name].address]
        seed = "{}:{}".format(*seeds[0])
        router = await stack.enter_async_context(run_router(tmp_path / "router", seeds=[seed]))
        with trio.fail_after(START_TIMEOUT):
            await wait_until_async(lambda: _map_shows(router, set(ZONES)))
        yield Cluster(router=router, frontends=frontends, advertisers=advertisers)


def _connected(conn: continuity.Connection) -> list[ConnectionEvent]:
    return [
        e for e in conn.event_log if isinstance(e, ConnectionEvent) and e.state is ConnectionState.CONNECTED
    ]


async def _resume(conn: continuity.Connection) -> ConnectionEvent:
    """Drop the transport and return the CONNECTED that follows."""
    before = len(_connected(conn))
    conn.drop_transport()
    await wait_until(lambda: len(_connected(conn)) > before)
    return _connected(conn)[-1]


async def test_new_connection_and_resume_reach_the_owner(cluster: Cluster) -> None:
    with trio.fail_after(20):
        async with continuity.connect(cluster.router.url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
            owner = cluster.node_of(conn)
            assert owner in ZONES
            first_id = conn.id
            ch = conn.channel("routed")
            async with ch.subscribe() as sub:
                await ch.publish("n", 0)
                assert (await sub.receive()).data == 0
                for _ in range(3):
                    event = await _resume(conn)
                    assert event.resumed and event.reason is None, event
                    assert conn.id == first_id
                    assert cluster.node_of(conn) == owner
                await ch.publish("n", 1)
                assert (await sub.receive()).data == 1
        metrics = await cluster.router.metrics()
    assert metrics['continuity_router_decisions_total{reason="new"}'] >= 1
    assert metrics['continuity_router_decisions_total{reason="owner"}'] >= 3
    assert metrics['continuity_router_requests_total{kind="websocket"}'] >= 4


async def test_forged_resume_key_is_answered_in_band(cluster: Cluster) -> None:
    with trio.fail_after(20):
        async with continuity.connect(cluster.router.url, key=API_KEY) as conn:
            real = conn.key
        assert real is not None
        forged = real[:-3] + ("AAA" if not real.endswith("AAA") else "BBB")
        for fmt in ("json", "msgpack"):
            async with raw_connect(cluster.router.url, fmt=fmt, key=API_KEY, resume=forged) as raw:
                pm = await raw.recv_action(Action.CONNECTED, Action.ERROR)
                assert pm.error is not None and pm.error.code == ErrorCode.INVALID_CONNECTION_KEY, pm
        metrics = await cluster.router.metrics()
    assert metrics['continuity_router_decisions_total{reason="invalid_key"}'] >= 2


async def test_killed_owner_resume_goes_to_a_live_frontend(cluster: Cluster) -> None:
    """The map still says the owner is alive (its advertiser lives on): the refused connect is enough."""
    with trio.fail_after(25):
        async with continuity.connect(cluster.router.url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
            owner = cluster.node_of(conn)
            survivor = next(n for n in ZONES if n != owner)
            await cluster.frontends[owner].stop(kill=True)
            await wait_until(lambda: len(_connected(conn)) >= 2)
            event = _connected(conn)[-1]
            assert cluster.node_of(conn) == survivor
            # Until takeover exists the survivor answers 80008 with a new connection; with takeover the
            # connectionId is kept. Either way the router picked a live frontend and did not hang.
            assert event.resumed or (
                event.reason is not None and event.reason.code == ErrorCode.CONNECTION_EXPIRED
            ), event
            metrics = await cluster.router.metrics()
            assert metrics[f'continuity_router_target_refused_total{{target="{owner}"}}'] >= 1

            # Once gossip says the owner is gone, nothing is tried on it any more.
            await cluster.advertisers[owner].leave()
            await wait_until_async(lambda: _map_shows(cluster.router, {survivor}))
            refused_metric = f'continuity_router_target_refused_total{{target="{owner}"}}'
            refused = (await cluster.router.metrics())[refused_metric]
            async with continuity.connect(cluster.router.url, key=API_KEY) as again:
                assert cluster.node_of(again) == survivor
            await _resume(conn)
            assert cluster.node_of(conn) == survivor
            final = await cluster.router.metrics()
    assert final[refused_metric] == refused


async def test_http_is_served_or_forwarded(cluster: Cluster) -> None:
    router = cluster.router
    with trio.fail_after(20):
        status, body = await router.get("/health")
        health = json.loads(body)
        assert status == 200 and health["role"] == "router" and health["frontends_active"] == 2
        members = await router.cluster()
        assert {m["node_id"] for m in members} == {"it-r1", *ZONES}
        status, body = await router.get("/time")  # served by a frontend
        assert status == 200 and isinstance(json.loads(body), list)
        status, body = await router.get("/no/such/path")  # the frontend's 404, passed through
        assert status == 404 and json.loads(body)["error"]["code"] == ErrorCode.KEY_NOT_FOUND
        # Keep-alive on both sides: three requests on one client connection, one pooled upstream.
        stream = await trio.open_tcp_stream("127.0.0.1", router.port)
        async with stream:
            request = b"GET /time HTTP/1.1\r\nhost: x\r\n\r\n"
            await stream.send_all(request * 2 + b"GET /time HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
        assert raw.count(b"HTTP/1.1 200 ") == 3
        metrics = await router.metrics()
    assert metrics["continuity_router_pool_reused_total"] >= 2
    assert metrics['continuity_router_requests_total{kind="local"}'] >= 2
    assert metrics['continuity_router_forwarded_total{status="2xx"}'] >= 4


async def test_no_frontend_is_answered_503_and_in_band(tmp_path: Path) -> None:
    async with run_router(tmp_path / "router") as router:
        with trio.fail_after(15):
            status, body = await router.get("/comet/connect?key=x")
            assert status == 503
            assert json.loads(body)["error"]["code"] == ErrorCode.DISCONNECTED
            for fmt in ("json", "msgpack"):
                async with raw_connect(router.url, fmt=fmt, key=API_KEY) as raw:
                    pm = await raw.recv()
                    assert pm.action == Action.DISCONNECTED, pm
                    assert pm.error is not None and pm.error.code == ErrorCode.DISCONNECTED
                    await raw.closed()
            metrics = await router.metrics()
    assert metrics['continuity_router_decisions_total{reason="unavailable"}'] >= 3


# ---------------------------------------------------------------------------------------------------
# In-process: the router's front door against fake frontends (a static map, no gossip), for the
# failure paths that real frontends do not produce on demand.

SLOW_CHUNK_GAP = 0.3


def _static_router(peers: dict[str, int], **config: Any) -> Router:
    view = ClusterView(
        {
            name: Peer(
                node_id=name,
                role="frontend",
                zone=ZONES.get(name, "a"),
                client_addr=f"127.0.0.1:{port}",
                load=float(i),
            )
            for i, (name, port) in enumerate(peers.items())
        }
    )
    cfg = RouterConfig(port=0, cluster_secret=CLUSTER_SECRET, **config)
    return Router(cfg, ClusterMap(view))


async def _fake_frontend(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    listeners: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
    )
    return int(listeners[0].socket.getsockname()[1])


async def _read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError("closed before a full head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def _unused_port() -> int:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def test_slow_headers_are_cut(nursery: trio.Nursery) -> None:
    router = _static_router({}, header_timeout_s=0.2)
    port = await nursery.start(serve, router)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # and never the blank line
            assert await stream.receive_some(1024) == b""
    assert router.metrics.header_timeouts._value.get() == 1


async def test_stale_pooled_connection_is_retried_and_responses_stream(nursery: trio.Nursery) -> None:
    async def frontend(stream: trio.SocketStream) -> None:
        """Answers one request per connection, then closes without saying so; /stream trickles."""
        async with stream:
            head, _ = await _read_head(stream)
            if head.startswith(b"GET /stream"):
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
                )
                await trio.sleep(SLOW_CHUNK_GAP)
                await stream.send_all(b"7\r\nsecond\n\r\n0\r\n\r\n")
            else:
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    fe_port = await _fake_frontend(nursery, frontend)
    router = _static_router({"it-a1": fe_port})
    port = await nursery.start(serve, router)
    with trio.fail_after(5):
        for _ in range(3):
            status, body = await http_get("127.0.0.1", port, "/comet/connect")
            assert (status, body) == (200, b"ok")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            started = trio.current_time()
            received = b""
            while b"first" not in received:
                received += await stream.receive_some(65536)
            assert trio.current_time() - started < SLOW_CHUNK_GAP  # streamed, not buffered
            while chunk := await stream.receive_some(65536):
                received += chunk
            assert b"second" in received
    assert router.metrics.pool_stale._value.get() >= 2


async def test_refused_target_is_skipped_and_remembered(nursery: trio.Nursery) -> None:
    async def frontend(stream: trio.SocketStream) -> None:
        async with stream:
            await _read_head(stream)
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nalive")

    live = await _fake_frontend(nursery, frontend)
    dead = await _unused_port()
    router = _static_router({"it-a1": dead, "it-b1": live}, refused_memory_s=30)  # it-a1 is least loaded
    port = await nursery.start(serve, router)
    with trio.fail_after(5):
        for _ in range(3):
            assert await http_get("127.0.0.1", port, "/comet/connect") == (200, b"alive")
    refused = router.metrics.target_refused.labels(target="it-a1")._value.get()
    assert refused == 1  # remembered: later requests went straight to it-b1


async def test_websocket_pipe_replays_head_and_early_bytes(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []

    async def frontend(stream: trio.SocketStream) -> None:
        async with stream:
            head, rest = await _read_head(stream)
            seen.append(head)
            await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + rest)
            while chunk := await stream.receive_some(65536):
                await stream.send_all(chunk)

    fe_port = await _fake_frontend(nursery, frontend)
    router = _static_router({"it-a1": fe_port})
    port = await nursery.start(serve, router)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                b"GET /?format=json HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n"
                b"connection: Upgrade\r\nsec-websocket-key: a2V5\r\n"
                b"sec-websocket-version: 13\r\n\r\nearly"
            )
            received = b""
            while b"early" not in received:
                received += await stream.receive_some(65536)
            await stream.send_all(b"later")
            while b"later" not in received:
                received += await stream.receive_some(65536)
            assert router.metrics.websockets_live._value.get() == 1
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        await wait_until(lambda: router.metrics.websockets_live._value.get() == 0)
    assert b"x-forwarded-for: 127.0.0.1" in seen[0]
    assert seen[0].startswith(b"GET /?format=json HTTP/1.1\r\n")


async def _raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> bytes:
    """One GET on its own connection; the response body (Comet answers carry a length)."""
    conn = h11.Connection(h11.CLIENT)
    extra = [(k, v) for k, v in (headers or {}).items()]
    request = h11.Request(
        method="GET", target=target, headers=[("host", "x"), ("connection", "close"), *extra]
    )
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    body = b""
    async with stream:
        await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return body


async def test_a_comet_request_forwarded_before_its_transport_opened_is_refused(cluster: Cluster) -> None:
    """The router stamps what it forwards (``x-continuity-forwarded``); a Comet request stamped
    before its transport's connect (one held in a partition's TCP buffers while its client resumed
    on the same frontend, whose key is unchanged) is answered DISCONNECTED and takes nothing."""
    router = cluster.router
    with trio.fail_after(20):
        query = f"/comet/connect?key={API_KEY}&v=3&format=json&heartbeats=true"
        (connected,) = json.loads(await _raw_get(router.port, query))
        assert connected["action"] == Action.CONNECTED
        key = connected["connectionDetails"]["connectionKey"]
        fe = cluster.frontends[connected["connectionDetails"]["serverId"].removeprefix("continuity.")]
        late = json.loads(
            await _raw_get(fe.port, f"/comet/{key}/recv", {"x-continuity-forwarded": "it-r1 1"})
        )
        assert late[0]["action"] == Action.DISCONNECTED and "before" in late[0]["error"]["message"]
        own = json.loads(await _raw_get(router.port, f"/comet/{key}/recv"))  # stamped now: served
        assert all(m["action"] != Action.DISCONNECTED for m in own)

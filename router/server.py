"""The router's one-port front door: h11 for HTTP, WebSocket upgrades piped to a frontend.

Per client socket: read a request head within ``header_timeout_s`` (no slowloris, at most
``MAX_HEAD_BYTES``), then

- ``/health`` (readiness), ``/livez``: answered here, keep-alive;
- admin paths (``/cluster``, ``/metrics``, ``/dashboard/``, ``/admin/``): ``router.admin``, here
  only when no admin listener is configured (and with the admin token when one is set);
- ``/demo/``, ``/vendor/ably.min.js``, ``/dev/tunnel``, ``/assets/``: the router's own pages
  (``router.static``);
- a WebSocket upgrade: routed (``router.decide``) and turned into a byte pipe to the target; the
  socket belongs to the pipe from then on;
- anything else (Comet, REST-ish paths, unknown paths): routed and forwarded on a pooled keep-alive
  connection, the response streamed back; the client connection stays keep-alive.

A target that refuses the TCP connect is added to the request's ``refused`` set (and remembered
for ``refused_memory_s``) and the decision is made again, up to ``connect_attempts`` targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import h11
import structlog
import trio

from kernel.accept import serve_listeners
from kernel.http import is_websocket, peer_of, read_body, serve_http
from kernel.keys import KeySigner
from kernel.quorum import MAC_HEADER, WITNESS_PATH
from kernel.tls import wrap_listeners
from router import proxy, static
from router.admin import RouterAdmin, is_admin_path
from router.cluster import ClusterMap
from router.config import RouterConfig
from router.decide import (
    UNAVAILABLE,
    Decision,
    NoRoute,
    Reason,
    RecentAssignments,
    RefusalMemory,
    RequestKind,
    Route,
    RouteRequest,
    decide,
)
from router.metrics import RouterMetrics
from router.pool import Pools, TargetRefused, open_upstream
from router.tunnel import Tunnels, match_of
from router.witness import WitnessService, encode

log = structlog.get_logger("continuity.router")

LOCAL_PATHS = frozenset({"/health", "/livez"})
SWEEP_INTERVAL_S = 1.0
_QUIET_REASONS = frozenset({Reason.NEW, Reason.OWNER})


class Router:
    """Shared state of one router: config, map, signer, refusal memory, pools and metrics."""

    def __init__(self, config: RouterConfig, cluster: ClusterMap, *, metrics: RouterMetrics | None = None
                 ) -> None:
        self.config = config
        self.cluster = cluster
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self.signer = KeySigner(config.secrets)
        self.refusals = RefusalMemory(config.refused_memory_s)
        self.recent = RecentAssignments()
        self.pools = Pools(max_idle=config.pool_max_idle, idle_timeout_s=config.pool_idle_timeout_s,
                           connect_timeout_s=config.connect_timeout_s, metrics=self.metrics)
        self.port: int | None = None
        self.admin_port: int | None = None  # the admin listener's bound port, when there is one
        self.tunnels = Tunnels()  # the dev-mode tunnel hook (router.tunnel); idle outside dev mode
        self.admin = RouterAdmin(self)
        self.witness = WitnessService(self)

    def choose(self, request: RouteRequest, refused: set[str], peer: str) -> Decision:
        """Decide for ``request`` with this request's and the remembered refusals; count and log it."""
        skip = refused | self.refusals.current(trio.current_time())
        decision = decide(request, self.recent.adjusted(self.cluster.view), self.signer, skip)
        if isinstance(decision, NoRoute):
            self.metrics.decisions.labels(reason=UNAVAILABLE).inc()
            log.warning("route.unavailable", kind=str(request.kind), wanted=str(decision.wanted),
                        refused=sorted(skip), peer=peer)
            return decision
        self.metrics.decisions.labels(reason=str(decision.reason)).inc()
        if decision.reason is Reason.NEW:
            self.recent.note(decision.target)
        emit = log.debug if decision.reason in _QUIET_REASONS else log.info
        emit("route.decided", kind=str(request.kind), reason=str(decision.reason), target=decision.target,
             connection_id=decision.connection_id, peer=peer)
        return decision

    def target_refused(self, route: Route, refused: set[str], error: str) -> None:
        refused.add(route.target)
        self.refusals.note(route.target, trio.current_time())
        self.metrics.target_refused.labels(target=route.target).inc()
        log.warning("route.target_refused", target=route.target, address=route.address, error=error)

    @contextmanager
    def cuttable(self, request: RouteRequest) -> Iterator[trio.CancelScope]:
        """A scope that a dev-mode tunnel cut of this request's client cancels; cancelled at once if
        the client is inside a cut now (``router.tunnel``). A plain scope outside dev mode."""
        match = match_of(request, self.signer) if self.config.dev else None
        with trio.CancelScope() as scope:
            if not match:
                yield scope
                return
            with self.tunnels.watching(match, scope.cancel):
                if self.tunnels.blocked(trio.current_time(), match):
                    scope.cancel()
                    log.info("tunnel.refused", connection_id=match.connection_id, tag=match.tag,
                             path=request.path)
                yield scope

    async def sweep_loop(self) -> None:
        """Close expired idle pooled connections and pools of frontends gone from the map."""
        while True:
            await trio.sleep(SWEEP_INTERVAL_S)
            view = self.cluster.view
            live = {(p.node_id, p.client_addr) for p in view.frontends() if p.alive}
            live |= {(p.node_id, p.admin_addr) for p in view.frontends() if p.alive and p.admin_addr}
            await self.pools.sweep(trio.current_time(), live)


class FrontDoor:
    """Serves one client socket at a time (one instance per router; ``handle`` is reentrant)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection (the h11 loop is ``kernel.http.serve_http``)."""
        metrics = self.router.metrics
        peer = peer_of(stream)

        def header_timeout() -> None:
            metrics.header_timeouts.inc()
            log.debug("http.header_timeout", peer=peer)

        def protocol_error(exc: h11.RemoteProtocolError) -> None:
            metrics.protocol_errors.labels(side="client").inc()
            log.info("http.rejected", reason=str(exc), peer=peer)

        async def dispatch(conn: h11.Connection, stream: trio.abc.Stream, event: h11.Request) -> bool:
            return await self.dispatch(conn, stream, event, peer)

        await serve_http(stream, dispatch, header_timeout_s=self.router.config.header_timeout_s,
                         on_header_timeout=header_timeout, on_protocol_error=protocol_error)

    async def dispatch(self, conn: h11.Connection, stream: trio.abc.Stream, event: h11.Request,
                       peer: str) -> bool:
        """Answer one request; False when the connection must end (piped, or the client left)."""
        router = self.router
        metrics = router.metrics
        target = event.target.decode("latin-1")
        request = RouteRequest.from_target(target, upgrade=is_websocket(event))
        if request.path in LOCAL_PATHS and not request.upgrade:
            metrics.requests.labels(kind=str(RequestKind.LOCAL)).inc()
            await read_body(conn, stream)
            status, health = router.admin.health() if request.path == "/health" else (200, {"status": "ok"})
            await proxy.respond(stream, conn, status, b"application/json", json.dumps(health).encode())
            return True
        if request.path == WITNESS_PATH and event.method == b"POST" and not request.upgrade:
            metrics.requests.labels(kind=str(RequestKind.LOCAL)).inc()
            body = await read_body(conn, stream)
            mac = dict(event.headers).get(MAC_HEADER.encode(), b"").decode("latin-1")
            status, answer = router.witness.answer(body, mac, int(time.time() * 1000))
            await proxy.respond(stream, conn, status, b"application/json", encode(answer))
            return True
        if is_admin_path(request.path) and not request.upgrade:
            metrics.requests.labels(kind=str(RequestKind.LOCAL)).inc()
            body = await read_body(conn, stream)
            await router.admin.serve(conn, stream, event, request, body, on_admin_listener=False)
            return True
        if static.handles(request.path) and not request.upgrade:
            metrics.requests.labels(kind=str(RequestKind.LOCAL)).inc()
            await read_body(conn, stream)
            await static.serve(router, conn, stream, event.method, request)
            return True
        if request.upgrade:
            metrics.requests.labels(kind=str(RequestKind.WEBSOCKET)).inc()
            with router.cuttable(request) as cut:
                if not cut.cancel_called:
                    await self._websocket(conn, stream, event, request, peer)
            return False
        metrics.requests.labels(kind=str(request.kind)).inc()
        if conn.client_is_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            await stream.send_all(conn.send(go_on) or b"")
        body = await read_body(conn, stream)
        forwarded = False
        with router.cuttable(request) as cut:
            if not cut.cancel_called:
                forwarded = await self._forward(conn, stream, event, body, request, peer)
        return forwarded

    async def _websocket(self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request,
                         request: RouteRequest, peer: str) -> None:
        router = self.router
        refused: set[str] = set()
        decision: Decision | None = None
        upstream: trio.SocketStream | None = None
        for _ in range(router.config.connect_attempts):
            decision = router.choose(request, refused, peer)
            if isinstance(decision, NoRoute):
                break
            try:
                upstream = await open_upstream(decision.address, router.config.connect_timeout_s)
                break
            except TargetRefused as exc:
                router.target_refused(decision, refused, str(exc))
        if upstream is None or not isinstance(decision, Route):
            message = decision.message if isinstance(decision, NoRoute) else "every frontend tried refused"
            fmt = request.params.get("format", "json")
            await proxy.refuse_websocket(stream, conn, req, fmt, proxy.unavailable_error(message))
            return
        trailing, _ = conn.trailing_data
        router.metrics.websockets_total.inc()
        router.metrics.websockets_live.inc()
        log.debug("route.pipe_opened", target=decision.target, peer=peer)
        try:
            async with upstream:
                await proxy.pipe(stream, upstream, proxy.request_head(req, peer) + trailing)
        finally:
            router.metrics.websockets_live.dec()
            log.debug("route.pipe_closed", target=decision.target, peer=peer)

    async def _forward(self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request, body: bytes,
                       request: RouteRequest, peer: str) -> bool:
        """Forward one request; return whether the client connection may carry another."""
        router = self.router
        refused: set[str] = set()
        upstream_req = proxy.upstream_request(req, body, peer, router.config.node_id)
        message = "every frontend tried refused"
        for _ in range(router.config.connect_attempts):
            decision = router.choose(request, refused, peer)
            if isinstance(decision, NoRoute):
                message = decision.message
                break
            pool = router.pools.get(decision.target, decision.address)
            fresh = False
            while True:
                try:
                    up = await pool.acquire(fresh=fresh)
                except TargetRefused as exc:
                    router.target_refused(decision, refused, str(exc))
                    break
                started = trio.current_time()
                try:
                    status = await proxy.exchange(pool, up, upstream_req, body, stream, conn,
                                                  router.config.upstream_timeout_s)
                except proxy.StaleConnection:
                    router.metrics.pool_stale.inc()
                    fresh = True
                    continue
                except proxy.UpstreamFailed as exc:
                    router.metrics.protocol_errors.labels(side="frontend").inc()
                    log.warning("route.forward_failed", target=decision.target, error=str(exc), peer=peer)
                    if conn.our_state is h11.SEND_RESPONSE:
                        await proxy.respond_error(stream, conn, proxy.unavailable_error(
                            f"frontend {decision.target} failed the request"))
                        return True
                    return False
                router.metrics.forwarded.labels(status=f"{status // 100}xx").inc()
                router.metrics.forward_seconds.observe(trio.current_time() - started)
                return True
        await proxy.respond_error(stream, conn, proxy.unavailable_error(message))
        return True


async def serve(router: Router, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on the configured host/port and serve until cancelled. Reports the bound port."""
    cfg = router.config
    tls = cfg.tls_context()
    listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
    port = listeners[0].socket.getsockname()[1]
    router.port = port
    door = FrontDoor(router)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(router.sweep_loop)
            if cfg.admin_port is not None:
                admin_listeners = await trio.open_tcp_listeners(cfg.admin_port, host=cfg.admin_host)
                router.admin_port = admin_listeners[0].socket.getsockname()[1]
                await nursery.start(partial(trio.serve_listeners, router.admin.handle, admin_listeners))
            await nursery.start(partial(serve_listeners, door.handle, wrap_listeners(listeners, tls)))
            if cfg.port_file:
                # The client port, then the admin listener's port when there is one.
                ports = f"{port}\n" + (f"{router.admin_port}\n" if router.admin_port is not None else "")
                await trio.Path(cfg.port_file).write_text(ports)
            log.info("router.listening", host=cfg.host, port=port, node_id=cfg.node_id, zone=cfg.zone,
                     tls=tls is not None,
                     admin=f"{cfg.admin_host}:{router.admin_port}" if router.admin_port is not None
                     else "client port")
            task_status.started(port)
    finally:
        with trio.CancelScope(shield=True):
            await router.pools.close()

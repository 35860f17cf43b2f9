"""The one-port front door: h11 for HTTP, upgrading ``/`` to a WebSocket.

Plain requests (``/health``, ``/metrics``, ``/cluster``) are answered with
keep-alive; Ably REST paths (``/channels``, ``/messages``, ``/keys``) go to
``frontend.rest``; ``/comet/...`` goes to the Comet transport (``frontend.comet``),
whose ``/recv`` long-poll is abandoned if the client closes its socket. A
``GET /`` with ``Upgrade: websocket`` is answered ``101`` by h11 and the socket
is handed, with any bytes already read, to the WebSocket transport. Request
headers must arrive within ``header_timeout_s`` (no slowloris), and a request
head is at most 16 KiB.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog
import trio

from frontend import rest_presence, sandbox
from frontend.admin import FrontendAdmin, error_answer, is_admin_path
from frontend.clock import wall_ms
from frontend.cluster import Cluster
from frontend.comet import COMET_PREFIX, CometService, Prepare, parse_path
from frontend.history import PersistedHistory
from frontend.node import FrontendNode
from frontend.outflow import Outflow
from frontend.persistence import Persistence, open_store
from frontend.presence_history import PresenceHistory
from frontend.rest.history import LogHistory
from frontend.rest.service import RestService
from frontend.ticker import Ticker
from frontend.websocket import run_websocket
from kernel.accept import serve_listeners
from kernel.errors import ErrorCode, ErrorInfo
from kernel.http import Handover, forwarded, header, is_websocket, read_body, respond, serve_http
from kernel.tls import wrap_listeners

log = structlog.get_logger("continuity.frontend")

FIXTURE_TIMEOUT_S = (
    10.0  # a sandbox app's presence fixtures are entered within this, or it is answered without
)

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_COMET_HEADERS = [(b"cache-control", b"no-cache, no-store")]
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"content-type, accept, authorization, x-ably-version, ably-agent, x-ably-clientid",
    ),
    (b"access-control-expose-headers", b"x-ably-errorcode, x-ably-errormessage, link"),
]

Handler = Callable[[h11.Request], Awaitable[tuple[int, bytes, bytes]]]


def accept_token(key: bytes) -> bytes:
    """RFC 6455 Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


class FrontDoor:
    def __init__(
        self, node: FrontendNode, cluster: Cluster | None = None, config_path: str | None = None
    ) -> None:
        self.node = node
        self.cluster = cluster
        self.comet = CometService(node, self._prepare())
        self.admin = FrontendAdmin(node, cluster, config_path)
        cfg = node.config
        self.outflow = Outflow(
            high=cfg.publish_backlog_high_bytes,
            low=cfg.publish_backlog_low_bytes,
            stall_s=cfg.slow_consumer_stall_s,
            budget=cfg.consumer_budget_bytes,
        )
        # History: persisted channels from their store, the others from the log at their home.
        self.rest = RestService(node, wall_ms, history=PersistedHistory(node, LogHistory(node, wall_ms)))
        self.presence_history = PresenceHistory(node, wall_ms)  # /channels/{id}/presence/history

    def _prepare(self) -> Prepare | None:
        """The cluster's takeover hook for resumes, once it has joined (else None)."""
        if self.cluster is None:
            return None
        cluster = self.cluster

        async def prepare(params: Mapping[str, str]) -> Mapping[str, str]:
            return await cluster.prepare(params) if cluster.bus is not None else params

        return prepare

    async def route(self, req: h11.Request, body: bytes = b"") -> tuple[int, bytes, bytes]:
        target = urlsplit(req.target.decode("latin-1"))
        path = target.path
        if req.method == b"OPTIONS":
            return 204, b"text/plain", b""
        if self.node.sandbox_keys is not None and sandbox.handles(path):
            status, ctype, reply = self._sandbox(req, path, target.query, body)
            if status == 201 and path == sandbox.APPS_PATH:
                await self._presence_fixtures(json.loads(reply))
            return status, ctype, reply
        if path == "/health":
            return self.admin.health()
        if path == "/livez":
            return self.admin.livez()
        if is_admin_path(path):
            return await self.admin.answer(req, body, on_admin_listener=False)
        if path == "/time":
            return 200, b"application/json", json.dumps([wall_ms()]).encode()
        return error_answer(ErrorInfo.of(ErrorCode.NOT_FOUND, f"no such path: {path}"))

    def _sandbox(self, req: h11.Request, path: str, query: str, body: bytes) -> tuple[int, bytes, bytes]:
        """The dev-mode sandbox (frontend.sandbox): provision a test app for an SDK's test suite."""
        assert self.node.sandbox_keys is not None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers}
        params = dict(parse_qsl(query, keep_blank_values=True))
        method = req.method.decode("latin-1")
        status, reply = sandbox.handle(self.node.sandbox_keys, method, path, headers, params, body)
        self.node.metrics.sandbox_requests.labels(status=str(status)).inc()
        emit = log.info if status < 400 else log.warning
        emit(
            "sandbox.request",
            method=method,
            path=path,
            status=status,
            app_id=reply.get("appId") if reply else None,
            error=reply.get("error") if reply else None,
        )
        return status, b"application/json", json.dumps(reply).encode() if reply is not None else b""

    async def _presence_fixtures(self, app: dict[str, Any]) -> None:
        """Enter a new sandbox app's presence fixtures (ably-common's ``persisted:presence_fixtures``)
        before the app is answered, so the suite's first ``presence.get()`` finds them."""
        for ch in app.get("channels") or []:
            name, fixtures = ch.get("name"), ch.get("presence")
            if not isinstance(name, str) or not isinstance(fixtures, list) or not fixtures:
                continue
            members = [f for f in fixtures if isinstance(f, dict)]
            got = trio.Event()
            outcome: list[bool] = []

            def done(ok: bool, outcome: list[bool] = outcome, got: trio.Event = got) -> None:
                outcome.append(ok)
                got.set()

            self.node.presence.enter_fixtures(self.node.channels.now_ms, name, members, done)
            self.node.wake()
            with trio.move_on_after(FIXTURE_TIMEOUT_S):
                await got.wait()
            log.info(
                "sandbox.presence_fixtures",
                channel=name,
                members=len(members),
                ok=bool(outcome and outcome[0]),
            )

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection (the h11 loop is ``kernel.http.serve_http``)."""
        await serve_http(
            stream,
            self.dispatch,
            header_timeout_s=self.node.config.header_timeout_s,
            on_header_timeout=lambda: log.debug("http.header_timeout"),
            on_protocol_error=self._protocol_error,
        )

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        self.node.metrics.protocol_errors.labels(transport="http").inc()
        log.info("http.rejected", reason=str(exc))

    async def dispatch(
        self, conn: h11.Connection, stream: trio.abc.Stream, event: h11.Request
    ) -> bool | Handover:
        """Answer one request; False when the connection must end (the client left, or a refused
        upgrade), the WebSocket's Handover when upgraded."""
        target = urlsplit(event.target.decode("latin-1"))
        if is_websocket(event) and target.path == "/":
            return await self._upgrade(conn, stream, event) or False
        request_body = await read_body(conn, stream)
        if target.path.startswith(COMET_PREFIX) and event.method in (b"GET", b"POST"):
            return await self._comet(
                conn, stream, event.method, target.path, target.query, request_body, forwarded(event.headers)
            )
        if rest_presence.handles(target.path):
            status, ctype, body, extra = await rest_presence.serve(
                self.node, event.method, event.headers, target, wall_ms(), history=self.presence_history
            )
            await self._respond(conn, stream, status, ctype, body, extra)
            return True
        if self.rest.serves(target.path) and event.method != b"OPTIONS":
            rest = await self.rest.handle(event.method, event.target, event.headers, request_body)
            await self._respond(conn, stream, rest.status, rest.content_type, rest.body, rest.headers)
            return True
        status, ctype, body = await self.route(event, request_body)
        await self._respond(conn, stream, status, ctype, body)
        return True

    async def _comet(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        method: bytes,
        path: str,
        query: str,
        body: bytes,
        sent: tuple[str, int] | None = None,
    ) -> bool:
        """Answer one Comet request; False when the client closed its socket during a long-poll."""
        parsed = parse_path(path)
        if parsed is None:
            self.node.metrics.comet_requests.labels(kind="invalid").inc()
            error = {"error": {"code": 40400, "statusCode": 404, "message": f"no such comet path: {path}"}}
            await self._respond(conn, stream, 404, b"application/json", json.dumps(error).encode())
            return True
        params = dict(parse_qsl(query, keep_blank_values=True))
        answer: bytes | None = None
        if parsed.op != "recv":
            answer = await self.comet.handle(method, parsed, params, body, sent)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_client, conn, stream, nursery.cancel_scope)
                answer = await self.comet.handle(method, parsed, params, body, sent)
                nursery.cancel_scope.cancel()
        if answer is None:
            return False
        await self._respond(conn, stream, 200, b"application/json", answer, _COMET_HEADERS)
        return True

    async def _watch_client(
        self, conn: h11.Connection, stream: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        """During a long-poll: cancel ``scope`` if the client closes; keep any pipelined bytes for h11."""
        try:
            while data := await stream.receive_some(65536):
                conn.receive_data(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        status: int,
        ctype: bytes,
        body: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await respond(conn, stream, status, ctype, body, [*_CORS, *(extra or [])])

    async def _upgrade(
        self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request
    ) -> Handover | None:
        """Answer 101 and return what serves the WebSocket once the HTTP state is dropped."""
        key = header(req.headers, b"sec-websocket-key")
        version = header(req.headers, b"sec-websocket-version")
        if key is None or version != b"13":
            await self._respond(
                conn, stream, 400, b"text/plain", b"websocket upgrade needs version 13 and a key\n"
            )
            return None
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(key)),
        ]
        switching = h11.InformationalResponse(status_code=101, headers=headers, reason=b"Switching Protocols")
        await stream.send_all(conn.send(switching) or b"")
        trailing, _ = conn.trailing_data
        query = urlsplit(req.target.decode("latin-1")).query
        params = dict(parse_qsl(query, keep_blank_values=True))
        prepare = self.cluster.prepare if self.cluster is not None and self.cluster.bus is not None else None
        return partial(run_websocket, stream, self.node, params, bytes(trailing), prepare, self.outflow)


async def serve(
    node: FrontendNode,
    cluster: Cluster | None = None,
    *,
    config_path: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the configured host/port and serve until cancelled. Reports the bound port.

    With a ``cluster``, the node joins it (gossip and peer links) before the port is reported.
    """
    cfg = node.config
    tls = cfg.tls_context()
    listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
    port = listeners[0].socket.getsockname()[1]
    door = FrontDoor(node, cluster, config_path)
    admin_port: int | None = None
    async with trio.open_nursery() as nursery:
        if cfg.channels:
            # Persisted channels: the store is open before any client or peer is served.
            persistence = Persistence(cfg, node.metrics, open_store(cfg.store_url))
            persistence.on_input = lambda: node.wake()
            await nursery.start(persistence.run)
            node.persistence = node.channels.persistence = persistence
        if cfg.admin_port is not None:
            admin_listeners = await trio.open_tcp_listeners(cfg.admin_port, host=cfg.admin_host)
            admin_port = admin_listeners[0].socket.getsockname()[1]
            await nursery.start(partial(trio.serve_listeners, door.admin.handle, admin_listeners))
        ticker = Ticker(node)
        node.wake = ticker.poke
        nursery.start_soon(ticker.run)
        nursery.start_soon(door.comet.run)
        nursery.start_soon(door.rest.revoker.run)
        await nursery.start(door.outflow.run)
        if cluster is not None:
            await nursery.start(cluster.run, port, admin_port)
        await nursery.start(partial(serve_listeners, door.handle, wrap_listeners(listeners, tls)))
        if cfg.port_file:
            # The client port, then the admin listener's port when there is one.
            ports = f"{port}\n" + (f"{admin_port}\n" if admin_port is not None else "")
            await trio.Path(cfg.port_file).write_text(ports)
        log.info(
            "frontend.listening",
            host=cfg.host,
            port=port,
            node_id=cfg.node_id,
            zone=cfg.zone,
            dev=cfg.dev,
            tls=tls is not None,
            admin=f"{cfg.admin_host}:{admin_port}" if admin_port is not None else "client port",
        )
        task_status.started(port)

"""The one-port front door: h11 for HTTP, upgrading ``/`` to a WebSocket.

Plain requests (``/health``, ``/metrics``, ``/cluster``) are answered with
keep-alive; ``/comet/...`` goes to the Comet transport (``frontend.comet``),
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

from frontend import rest_presence
from frontend.cluster import Cluster
from frontend.comet import COMET_PREFIX, CometService, Prepare, parse_path
from frontend.metrics import CONTENT_TYPE
from frontend.node import FrontendNode
from frontend.outflow import Outflow
from frontend.websocket import run_websocket, wall_ms
from kernel.membership import view_to_json

log = structlog.get_logger("continuity.frontend")

MAX_HEAD_BYTES = 16 * 1024
TICK_MAX_MS = 50
MAX_BODY_BYTES = 1024 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_COMET_HEADERS = [(b"cache-control", b"no-cache, no-store")]
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, accept, authorization, x-ably-version, ably-agent"),
    (b"access-control-expose-headers", b"x-ably-errorcode, x-ably-errormessage, link"),
]

Handler = Callable[[h11.Request], Awaitable[tuple[int, bytes, bytes]]]


def _header(req: h11.Request, name: bytes) -> bytes | None:
    for k, v in req.headers:
        if k == name:
            return v
    return None


def _is_websocket(req: h11.Request) -> bool:
    upgrade = (_header(req, b"upgrade") or b"").lower()
    connection = (_header(req, b"connection") or b"").lower()
    return req.method == b"GET" and upgrade == b"websocket" and b"upgrade" in connection


def accept_token(key: bytes) -> bytes:
    """RFC 6455 Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


class FrontDoor:
    def __init__(self, node: FrontendNode, cluster: Cluster | None = None) -> None:
        self.node = node
        self.cluster = cluster
        self.comet = CometService(node, self._prepare())
        cfg = node.config
        self.outflow = Outflow(
            high=cfg.publish_backlog_high_bytes,
            low=cfg.publish_backlog_low_bytes,
            stall_s=cfg.slow_consumer_stall_s,
        )

    def _prepare(self) -> Prepare | None:
        """The cluster's takeover hook for resumes, once it has joined (else None)."""
        if self.cluster is None:
            return None
        cluster = self.cluster

        async def prepare(params: Mapping[str, str]) -> Mapping[str, str]:
            return await cluster.prepare(params) if cluster.bus is not None else params

        return prepare

    async def route(self, req: h11.Request) -> tuple[int, bytes, bytes]:
        path = urlsplit(req.target.decode("latin-1")).path
        if req.method == b"OPTIONS":
            return 204, b"text/plain", b""
        if path == "/health":
            body = {"status": "ok", "node_id": self.node.node_id, "time": wall_ms()}
            return 200, b"application/json", json.dumps(body).encode()
        if path == "/metrics":
            self.node.refresh_gauges()
            if self.cluster is not None and self.cluster.member is not None:
                counters = self.cluster.member.counters
                for reason in ("malformed", "unauthenticated", "oversized", "version"):
                    value = getattr(counters, f"dropped_{reason}")
                    self.node.metrics.gossip_dropped.labels(reason=reason).set(value)
            return 200, CONTENT_TYPE.encode(), self.node.metrics.render()
        if path == "/cluster":
            body = {
                **self.node.snapshot(),
                "members": view_to_json(self.node.channels.view),
                "draining": bool(self.cluster and self.cluster.draining),
            }
            return 200, b"application/json", json.dumps(body).encode()
        if path.startswith("/debug/connections/"):
            return 200, b"application/json", json.dumps(self.node.describe(path.rsplit("/", 1)[1])).encode()
        if path == "/time":
            return 200, b"application/json", json.dumps([wall_ms()]).encode()
        return (
            404,
            b"application/json",
            json.dumps(
                {"error": {"code": 40400, "statusCode": 404, "message": f"no such path: {path}"}}
            ).encode(),
        )

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        cfg = self.node.config
        try:
            while True:
                with trio.move_on_after(cfg.header_timeout_s) as timeout:
                    event = await self._next_event(conn, stream)
                if timeout.cancelled_caught:
                    log.debug("http.header_timeout")
                    return
                if isinstance(event, (h11.ConnectionClosed, type(None))):
                    return
                if not isinstance(event, h11.Request):
                    return
                if _is_websocket(event) and urlsplit(event.target.decode("latin-1")).path == "/":
                    await self._upgrade(conn, stream, event)
                    return
                request_body = await self._drain_body(conn, stream)
                target = urlsplit(event.target.decode("latin-1"))
                if target.path.startswith(COMET_PREFIX) and event.method in (b"GET", b"POST"):
                    if not await self._comet(
                        conn, stream, event.method, target.path, target.query, request_body
                    ):
                        return
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                    continue
                if rest_presence.handles(target.path):
                    status, ctype, body, extra = await rest_presence.serve(
                        self.node, event.method, event.headers, target, wall_ms()
                    )
                    await self._respond(conn, stream, status, ctype, body, extra)
                else:
                    status, ctype, body = await self.route(event)
                    await self._respond(conn, stream, status, ctype, body)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            self.node.metrics.protocol_errors.labels(transport="http").inc()
            log.info("http.rejected", reason=str(exc))
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await self._respond(conn, stream, exc.error_status_hint, b"text/plain", b"bad request\n")
                except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _comet(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: bytes,
        path: str,
        query: str,
        body: bytes,
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
            answer = await self.comet.handle(method, parsed, params, body)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_client, conn, stream, nursery.cancel_scope)
                answer = await self.comet.handle(method, parsed, params, body)
                nursery.cancel_scope.cancel()
        if answer is None:
            return False
        await self._respond(conn, stream, 200, b"application/json", answer, _COMET_HEADERS)
        return True

    async def _watch_client(
        self, conn: h11.Connection, stream: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        """During a long-poll: cancel ``scope`` if the client closes; keep any pipelined bytes for h11."""
        try:
            while data := await stream.receive_some(65536):
                conn.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event

    async def _drain_body(self, conn: h11.Connection, stream: trio.SocketStream) -> bytes:
        body = bytearray()
        while True:
            event = await self._next_event(conn, stream)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage) or event is None:
                return bytes(body)
            else:
                raise h11.RemoteProtocolError("unexpected event in body")

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        ctype: bytes,
        body: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", ctype),
            (b"content-length", str(len(body)).encode()),
            *_CORS,
            *(extra or []),
        ]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        await stream.send_all(conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")

    async def _upgrade(self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request) -> None:
        key = _header(req, b"sec-websocket-key")
        version = _header(req, b"sec-websocket-version")
        if key is None or version != b"13":
            await self._respond(
                conn, stream, 400, b"text/plain", b"websocket upgrade needs version 13 and a key\n"
            )
            return
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(key)),
        ]
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=101, headers=headers)) or b"")
        trailing, _ = conn.trailing_data
        query = urlsplit(req.target.decode("latin-1")).query
        params = dict(parse_qsl(query, keep_blank_values=True))
        prepare = self.cluster.prepare if self.cluster is not None and self.cluster.bus is not None else None
        await run_websocket(stream, self.node, params, trailing, prepare, self.outflow)


async def _tick_loop(node: FrontendNode) -> None:
    while True:
        now = wall_ms()
        node.tick(now)
        # Retries of remote operations are scheduled from peer replies between ticks, so never
        # sleep longer than their granularity.
        await trio.sleep(min(max(node.next_deadline() - wall_ms(), 10), TICK_MAX_MS) / 1000)


async def serve(
    node: FrontendNode,
    cluster: Cluster | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the configured host/port and serve until cancelled. Reports the bound port.

    With a ``cluster``, the node joins it (gossip and peer links) before the port is reported.
    """
    cfg = node.config
    listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
    port = listeners[0].socket.getsockname()[1]
    door = FrontDoor(node, cluster)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_tick_loop, node)
        nursery.start_soon(door.comet.run)
        await nursery.start(door.outflow.run)
        if cluster is not None:
            await nursery.start(cluster.run, port)
        await nursery.start(partial(trio.serve_listeners, door.handle, listeners))
        if cfg.port_file:
            await trio.Path(cfg.port_file).write_text(f"{port}\n")
        log.info(
            "frontend.listening", host=cfg.host, port=port, node_id=cfg.node_id, zone=cfg.zone, dev=cfg.dev
        )
        task_status.started(port)

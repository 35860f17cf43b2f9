"""The frontend's health and admin surfaces.

- ``/health`` (client port and admin listener): readiness. 200 only when this node can number
  publishes: standalone, or in a cluster once it has joined and its map has settled, not
  draining, and with somewhere to copy (another zone, or a majority of zones: ``write``).
  Otherwise 503 with ``status`` ``joining``, ``draining`` or ``no_quorum`` (load balancers and
  k8s stop sending it clients).
- ``/livez``: liveness, 200 while the process answers at all.
- Admin paths (``/cluster``, ``/metrics``, ``/debug/connections/<id>``, ``/admin/...``, the
  operations of ``frontend.admin_ops``): served
  where ``kernel.admin.AdminGate`` allows (the admin listener when ``admin_port`` is set, and
  with a bearer token when ``admin_token`` is set).

``FrontendAdmin.handle`` serves the admin listener; ``frontend.http`` calls ``answer`` for admin
paths arriving on the client port.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import h11
import structlog
import trio

from frontend import admin_ops
from frontend.admin_ops import AdminRequestError
from frontend.clock import wall_ms
from frontend.cluster import Cluster
from frontend.metrics import CONTENT_TYPE
from frontend.node import FrontendNode
from kernel.errors import ErrorCode, ErrorInfo
from kernel.http import read_body, respond, serve_http
from kernel.membership import view_to_json

log = structlog.get_logger("continuity.frontend")

ADMIN_PATHS = frozenset({"/cluster", "/metrics"})
ADMIN_PREFIXES = ("/debug/", "/admin/")
_JSON = b"application/json"

Answer = tuple[int, bytes, bytes]


def is_admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith(ADMIN_PREFIXES)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise AdminRequestError(ErrorInfo.of(ErrorCode.BAD_REQUEST, "expected a JSON object body"))
    return parsed


def error_answer(error: ErrorInfo) -> Answer:
    return error.status_code, _JSON, json.dumps({"error": error.to_wire()}).encode()


class FrontendAdmin:
    def __init__(self, node: FrontendNode, cluster: Cluster | None, config_path: str | None = None) -> None:
        self.node = node
        self.cluster = cluster
        self.config_path = config_path  # where keys are reloaded from (SIGHUP, /admin/keys/reload)

    # -- health -------------------------------------------------------------------------------
    def readiness(self) -> str:
        """``ready``, ``joining`` (in a cluster, map not settled: cannot number), ``draining``, or
        ``no_quorum`` (no copy can be placed in another zone and this side holds no majority of
        zones: publishes are refused with 50350)."""
        cluster = self.cluster
        if cluster is None:
            return "ready"
        if cluster.draining:
            return "draining"
        if cluster.member is None or not self.node.channels.ready:
            return "joining"
        if not self.node.channels.write_available():
            return "no_quorum"
        return "ready"

    def health(self) -> Answer:
        state = self.readiness()
        body = {
            "status": "ok" if state == "ready" else state,
            "role": "frontend",
            "ready": state == "ready",
            "node_id": self.node.node_id,
            "zone": self.node.config.zone,
            "write": self.node.channels.write_status(),
            "time": wall_ms(),
        }
        return (200 if state == "ready" else 503), _JSON, json.dumps(body).encode()

    def livez(self) -> Answer:
        body = {"status": "ok", "node_id": self.node.node_id, "time": wall_ms()}
        return 200, _JSON, json.dumps(body).encode()

    # -- admin paths --------------------------------------------------------------------------
    def cluster_json(self) -> dict[str, Any]:
        """``GET /cluster``: this node and the map, the same shape as a router's."""
        return {
            **self.node.snapshot(),
            "ready": self.readiness() == "ready",
            "members": view_to_json(self.node.channels.view),
            "draining": bool(self.cluster and self.cluster.draining),
        }

    async def answer(self, req: h11.Request, body: bytes, *, on_admin_listener: bool) -> Answer:
        """Answer an admin path, or the gate's refusal (404 or 401)."""
        refusal = self.node.config.admin_gate.check(req.headers, on_admin_listener=on_admin_listener)
        if refusal is not None:
            return error_answer(refusal)
        path = urlsplit(req.target.decode("latin-1")).path
        if path == "/metrics":
            self.node.refresh_gauges()
            if self.cluster is not None and self.cluster.member is not None:
                counters = self.cluster.member.counters
                for reason in ("malformed", "unauthenticated", "oversized", "version"):
                    value = getattr(counters, f"dropped_{reason}")
                    self.node.metrics.gossip_dropped.labels(reason=reason).set(value)
            return 200, CONTENT_TYPE.encode(), self.node.metrics.render()
        if path == "/cluster":
            return 200, _JSON, json.dumps(self.cluster_json()).encode()
        if path.startswith("/debug/connections/"):
            return 200, _JSON, json.dumps(self.node.describe(path.rsplit("/", 1)[1])).encode()
        try:
            return self._operation(req.method, path, body)
        except AdminRequestError as exc:
            return error_answer(exc.error)

    def _operation(self, method: bytes, path: str, body: bytes) -> Answer:
        """``/admin/...`` (frontend.admin_ops); raise AdminRequestError for a bad request."""
        node = self.node
        result: Any
        if method == b"GET" and path == "/admin/connections":
            result = {"connections": admin_ops.connections(node)}
        elif method == b"GET" and path == "/admin/channels":
            result = {"channels": admin_ops.channels(node)}
        elif method == b"GET" and path == "/admin/keys":
            result = {"keys": admin_ops.key_list(node)}
        elif method == b"POST" and path == "/admin/keys":
            result = {"added": admin_ops.key_add(node, _json_body(body))}
        elif method == b"POST" and path == "/admin/keys/revoke":
            name = _json_body(body).get("name")
            if not isinstance(name, str) or not admin_ops.key_revoke(node, name):
                raise AdminRequestError(ErrorInfo.of(ErrorCode.NOT_FOUND, f"no such key: {name!r}"))
            result = {"revoked": name}
        elif method == b"POST" and path == "/admin/keys/reload":
            result = {"keys": admin_ops.reload_keys(node, self.config_path)}
        elif method == b"POST" and path == "/admin/kick":
            cid = _json_body(body).get("connection_id")
            if not isinstance(cid, str) or not admin_ops.kick(node, cid):
                raise AdminRequestError(ErrorInfo.of(ErrorCode.NOT_FOUND,
                                                     f"no such connection here: {cid!r}"))
            result = {"kicked": cid, "node_id": node.node_id}
        elif method == b"POST" and path == "/admin/drain":
            admin_ops.drain()
            return 202, _JSON, json.dumps({"draining": node.node_id}).encode()
        else:
            raise AdminRequestError(ErrorInfo.of(ErrorCode.NOT_FOUND,
                                                 f"no such admin operation: {method.decode()} {path}"))
        return 200, _JSON, json.dumps(result).encode()

    # -- the admin listener -------------------------------------------------------------------
    async def dispatch(self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request) -> bool:
        body = await read_body(conn, stream)
        path = urlsplit(req.target.decode("latin-1")).path
        if path == "/health":
            answer = self.health()
        elif path == "/livez":
            answer = self.livez()
        elif is_admin_path(path):
            answer = await self.answer(req, body, on_admin_listener=True)
        else:
            answer = error_answer(
                ErrorInfo.of(ErrorCode.NOT_FOUND, f"no such path on the admin listener: {path}")
            )
        status, ctype, payload = answer
        await respond(conn, stream, status, ctype, payload)
        return True

    async def handle(self, stream: trio.abc.Stream) -> None:
        await serve_http(stream, self.dispatch, header_timeout_s=self.node.config.header_timeout_s)

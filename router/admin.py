"""The router's health and admin surfaces.

- ``/health``: readiness. 200 when the map holds at least one live, active frontend (a router
  with none can route nobody), else 503 ``no_frontend``.
- ``/livez``: liveness, 200 while the process answers.
- Admin paths: ``/cluster`` (this router and its map, the same shape as a frontend's),
  ``/metrics``, the dashboard (``/dashboard/...``, served by ``router.static``) and
  ``/admin/...``. They are served where ``kernel.admin.AdminGate`` allows: on the admin listener
  when ``admin_port`` is set (never on the public port then), with a bearer token when
  ``admin_token`` is set.

``RouterAdmin.handle`` serves the admin listener; ``router.server`` hands admin paths arriving
on the client port to ``serve``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import h11
import trio

from kernel.admin import CHALLENGE
from kernel.errors import ErrorCode, ErrorInfo
from kernel.http import read_body, serve_http
from kernel.membership import view_to_json
from router import proxy, static
from router.decide import RouteRequest
from router.metrics import CONTENT_TYPE
from router.parts import RouterParts

ADMIN_PATHS = frozenset({"/cluster", "/metrics", "/dashboard"})
# /debug/ is a frontend's admin path: never forwarded to one from the public port.
ADMIN_PREFIXES = ("/dashboard/", "/admin/", "/debug/")
_JSON = b"application/json"


def is_admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith(ADMIN_PREFIXES)


class RouterAdmin:
    def __init__(self, router: RouterParts) -> None:
        self.router = router

    def readiness(self) -> str:
        """``ready`` when some live frontend is active (serving new connections), else ``no_frontend``."""
        view = self.router.cluster.view
        return "ready" if any(p.alive for p in view.active_frontends()) else "no_frontend"

    def health(self) -> tuple[int, dict[str, Any]]:
        view = self.router.cluster.view
        state = self.readiness()
        body = {
            "status": "ok" if state == "ready" else state,
            "ready": state == "ready",
            "role": "router",
            "node_id": self.router.config.node_id,
            "zone": self.router.config.zone,
            "frontends_active": len([p for p in view.active_frontends() if p.alive]),
            "time": int(time.time() * 1000),
        }
        return (200 if state == "ready" else 503), body

    def cluster_json(self) -> dict[str, Any]:
        """``GET /cluster``: this router and its map (the frontend's ``/cluster`` has this shape)."""
        cfg = self.router.config
        return {
            "node_id": cfg.node_id,
            "zone": cfg.zone,
            "role": "router",
            "state": "active",
            "ready": self.readiness() == "ready",
            "draining": False,
            "connections": {"websockets": int(self.router.metrics.registry.get_sample_value(
                "continuity_router_websockets_live") or 0)},
            "members": view_to_json(self.router.cluster.view),
        }

    async def serve(self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request,
                    request: RouteRequest, body: bytes, *, on_admin_listener: bool) -> None:
        """Answer an admin path (``request.path``), or the gate's refusal (404 or 401)."""
        router = self.router
        refusal = router.config.admin_gate.check(req.headers, on_admin_listener=on_admin_listener)
        if refusal is not None:
            challenge = CHALLENGE if refusal.status_code == 401 else []
            await proxy.respond_error(stream, conn, refusal, challenge)
            return
        path = request.path
        if path == "/metrics":
            await proxy.respond(stream, conn, 200, CONTENT_TYPE.encode(), router.metrics.render())
        elif path == "/cluster":
            await proxy.respond(stream, conn, 200, _JSON, json.dumps(self.cluster_json()).encode())
        elif path.startswith(("/admin/", "/debug/")):
            await proxy.respond_error(stream, conn,
                                      ErrorInfo.of(ErrorCode.NOT_FOUND, f"no such admin path: {path}"))
        else:
            await static.serve(router, conn, stream, req.method, request)

    async def dispatch(self, conn: h11.Connection, stream: trio.abc.Stream, req: h11.Request) -> bool:
        """One request on the admin listener: health, admin paths and the shared assets."""
        body = await read_body(conn, stream)
        request = RouteRequest.from_target(req.target.decode("latin-1"), upgrade=False)
        path = request.path
        if path in ("/health", "/livez"):
            status, payload = self.health() if path == "/health" else (200, {"status": "ok"})
            await proxy.respond(stream, conn, status, _JSON, json.dumps(payload).encode())
        elif is_admin_path(path):
            await self.serve(conn, stream, req, request, body, on_admin_listener=True)
        elif path.startswith("/assets/"):
            await static.serve(self.router, conn, stream, req.method, request)
        else:
            await proxy.respond_error(stream, conn, ErrorInfo.of(
                ErrorCode.NOT_FOUND, f"no such path on the admin listener: {path}"))
        return True

    async def handle(self, stream: trio.abc.Stream) -> None:
        await serve_http(stream, self.dispatch, header_timeout_s=self.router.config.header_timeout_s)

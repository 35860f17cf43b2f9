"""Pages the router serves itself: the group-chat demo, the cluster dashboard, and their helpers.

- ``/demo/`` and ``/dashboard/``: HTML, JS and CSS from ``router/static/`` (the repo path, next to
  this module); ``/assets/`` holds what both share.
- ``/vendor/ably.min.js``: the browser build of the project's own npm ``ably`` dependency
  (``node_modules/ably/build/ably.min.js``, installed by ``make install``); no CDN.
- ``/demo/config.json``: what the demo page needs to know about this router (dev mode: tunnel on;
  a ``demo_key``: token auth on).
- ``/demo/token?clientId=<name>``: a short-lived JWT for the demo page (``router.demo_auth``), only
  when ``demo_key`` is configured; 404 with the reason otherwise.
- ``/dashboard/state.json``: this router's cluster map plus each reachable frontend's own
  ``/cluster`` (connections, channel homes and replicas; from its admin listener when it has one,
  with this router's admin token when set), fetched on the router's keep-alive pools,
  concurrently and each within ``FRONTEND_FETCH_TIMEOUT_S``; the dashboard polls it.
- ``POST /dev/tunnel``: the tunnel test hook (``router.tunnel``), only in dev mode; 403 with the
  reason otherwise.

- ``/``: a page linking to the above (the dashboard only when it is served on this port).

Every file name is checked against a plain pattern before any disk access: no path traversal.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import h11
import trio

from kernel.admin import bearer_headers
from kernel.errors import ErrorCode, status_for
from kernel.membership import view_to_json
from router import proxy
from router.decide import RouteRequest
from router.demo_auth import DEMO_CHANNELS, BadClientId, mint_token
from router.parts import RouterParts
from router.pool import FrontendPool, TargetRefused
from router.tunnel import TAG_PARAM

STATIC_DIR = Path(__file__).resolve().parent / "static"
REPO_DIR = Path(__file__).resolve().parent.parent
ABLY_BUILD = Path("node_modules") / "ably" / "build" / "ably.min.js"
FRONTEND_FETCH_TIMEOUT_S = 2.0
MAX_FRONTEND_BODY = 4 * 1024 * 1024
TUNNEL_PATH = "/dev/tunnel"
TOKEN_PATH = "/demo/token"

_MOUNTS = {"/demo/": "demo", "/dashboard/": "dashboard", "/assets/": "assets"}
_REDIRECTS = {"/demo": "/demo/", "/dashboard": "/dashboard/"}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(html|js|css|svg)$")
_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
}
_NO_CACHE = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]
_JSON = b"application/json"


def handles(path: str) -> bool:
    """Whether ``path`` is one of the router's own pages (never forwarded to a frontend)."""
    return (
        path == "/"
        or path in _REDIRECTS
        or path == TUNNEL_PATH
        or path == "/vendor/ably.min.js"
        or any(path.startswith(prefix) for prefix in _MOUNTS)
    )


def ably_build_path() -> Path | None:
    """The ably-js browser build: under the repo (editable install), else under the working dir."""
    for base in (REPO_DIR, Path.cwd()):
        candidate = base / ABLY_BUILD
        if candidate.is_file():
            return candidate
    return None


def static_file(path: str) -> tuple[Path, bytes] | None:
    """``(file, content type)`` for a static URL path, or None if it names no served file."""
    for prefix, folder in _MOUNTS.items():
        if path.startswith(prefix):
            name = path[len(prefix) :] or "index.html"
            match = _NAME.match(name)
            if match is None:
                return None
            return STATIC_DIR / folder / name, _TYPES[match.group(1)]
    return None


async def serve(
    router: RouterParts, conn: h11.Connection, stream: trio.abc.Stream, method: bytes, request: RouteRequest
) -> None:
    """Answer one request for a path ``handles`` accepted (the body was already drained)."""
    path = request.path
    if path == TUNNEL_PATH:
        await _tunnel(router, conn, stream, method, request)
        return
    if method not in (b"GET", b"HEAD"):
        await _error(conn, stream, ErrorCode.METHOD_NOT_ALLOWED, "method not allowed")
        return
    if path == "/":
        await proxy.respond(stream, conn, 200, _TYPES["html"], b"" if method == b"HEAD" else _index(router),
                            _NO_CACHE)
    elif path in _REDIRECTS:
        await proxy.respond(stream, conn, 301, b"text/plain", b"", [(b"location", _REDIRECTS[path].encode())])
    elif path == "/vendor/ably.min.js":
        found = ably_build_path()
        if found is None:
            await _error(
                conn, stream, ErrorCode.NOT_FOUND, f"{ABLY_BUILD} is missing: run `make install` (npm ci)"
            )
            return
        await _file(conn, stream, method, found, _TYPES["js"])
    elif path == "/demo/config.json":
        cfg = router.config
        body = {
            "router": cfg.node_id,
            "zone": cfg.zone,
            "dev": cfg.dev,
            "tunnel": cfg.dev,
            "tagParam": TAG_PARAM,
            "auth": cfg.demo_key is not None,
            "channelPrefix": DEMO_CHANNELS.rstrip("*"),
        }
        await _json(conn, stream, body)
    elif path == TOKEN_PATH:
        await _token(router, conn, stream, request)
    elif path == "/dashboard/state.json":
        await _json(conn, stream, await dashboard_state(router))
    else:
        found_static = static_file(path)
        if found_static is None:
            await _error(conn, stream, ErrorCode.NOT_FOUND, f"no such page: {path}")
            return
        await _file(conn, stream, method, *found_static)


def _index(router: RouterParts) -> bytes:
    """``GET /``: where to go from here (a WebSocket or Comet client never asks for it)."""
    cfg = router.config
    if cfg.admin_port is None:
        dashboard = ('<li><a href="/dashboard/">/dashboard/</a>: the cluster dashboard (members, zones, '
                     "channels)</li>")
    else:
        dashboard = ("<li>the cluster dashboard is on this router's admin listener "
                     "(<code>admin_port</code>), not on this port</li>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Continuity router {cfg.node_id}</title>
<link rel="stylesheet" href="/assets/style.css"></head>
<body><header><h1>Continuity</h1><span class="sub">router {cfg.node_id}, zone {cfg.zone}</span></header>
<main><section class="card"><p>This is a Continuity router: point an Ably SDK at this address.</p><ul>
<li><a href="/demo/">/demo/</a>: a group chat on the real ably-js, with resume and failover</li>
{dashboard}
<li><a href="/health">/health</a>: readiness (503 until a frontend is live)</li>
</ul></section></main></body></html>
"""
    return page.encode()


async def _file(
    conn: h11.Connection, stream: trio.abc.Stream, method: bytes, file: Path, ctype: bytes
) -> None:
    try:
        body = await trio.Path(file).read_bytes()
    except OSError:
        await _error(conn, stream, ErrorCode.NOT_FOUND, f"no such file: {file.name}")
        return
    await proxy.respond(stream, conn, 200, ctype, b"" if method == b"HEAD" else body, _NO_CACHE)


async def _json(conn: h11.Connection, stream: trio.abc.Stream, body: Any, status: int = 200) -> None:
    await proxy.respond(stream, conn, status, _JSON, json.dumps(body).encode(), _NO_CACHE)


async def _error(conn: h11.Connection, stream: trio.abc.Stream, code: ErrorCode, message: str) -> None:
    status = status_for(code)
    await _json(
        conn, stream, {"error": {"code": int(code), "statusCode": status, "message": message}}, status
    )


async def _token(
    router: RouterParts, conn: h11.Connection, stream: trio.abc.Stream, request: RouteRequest
) -> None:
    demo_key = router.config.demo_key
    if demo_key is None:
        await _error(
            conn,
            stream,
            ErrorCode.NOT_FOUND,
            "no demo token endpoint: this router has no demo_key configured (router/config.py)",
        )
        return
    try:
        token = mint_token(demo_key, request.params.get("clientId", ""), time.time())
    except BadClientId as exc:
        await _error(conn, stream, ErrorCode.INVALID_CLIENT_ID, str(exc))
        return
    await proxy.respond(stream, conn, 200, b"application/jwt", token.encode(), _NO_CACHE)


async def _tunnel(
    router: RouterParts, conn: h11.Connection, stream: trio.abc.Stream, method: bytes, request: RouteRequest
) -> None:
    if not router.config.dev:
        await _error(
            conn,
            stream,
            ErrorCode.FORBIDDEN,
            "the tunnel test hook is disabled: this router is not in dev mode (dev = true / --dev)",
        )
        return
    if method != b"POST":
        await _error(conn, stream, ErrorCode.METHOD_NOT_ALLOWED, "POST only")
        return
    params = request.params
    try:
        seconds = float(params.get("seconds", "3"))
        cut = router.tunnels.cut(
            trio.current_time(),
            connection_id=params.get("connectionId"),
            tag=params.get("tag"),
            seconds=seconds,
        )
    except ValueError as exc:
        await _error(conn, stream, ErrorCode.BAD_REQUEST, str(exc))
        return
    await _json(
        conn,
        stream,
        {
            "cut": cut,
            "seconds": seconds,
            "connectionId": params.get("connectionId"),
            "tag": params.get("tag"),
        },
    )


# ------------------------------------------------------------------------------------ dashboard


async def dashboard_state(router: RouterParts) -> dict[str, Any]:
    """The router's map and, per frontend it can reach, that frontend's ``/cluster`` body.

    ``frontends[node_id]`` is ``{"ok": true, "cluster": {...}}`` or ``{"ok": false, "error": ...}``;
    a frontend the map holds dead or gone is not asked (``"error": "not alive"``).
    """
    view = router.cluster.view
    members = view_to_json(view)
    frontends: dict[str, dict[str, Any]] = {}

    auth = bearer_headers(router.config.admin_token)

    async def ask(node_id: str, address: str) -> None:
        try:
            with trio.fail_after(FRONTEND_FETCH_TIMEOUT_S):
                body = await fetch_json(router.pools.get(node_id, address), "/cluster", auth)
            frontends[node_id] = {"ok": True, "cluster": body}
        except (TargetRefused, trio.TooSlowError, ValueError, h11.ProtocolError, *proxy.STREAM_ERRORS) as exc:
            frontends[node_id] = {"ok": False, "error": type(exc).__name__}

    async with trio.open_nursery() as nursery:
        for peer in view.frontends():
            if peer.alive and (peer.admin_addr or peer.client_addr):
                # A frontend with an admin listener serves /cluster there only.
                nursery.start_soon(ask, peer.node_id, peer.admin_addr or peer.client_addr)
            else:
                frontends[peer.node_id] = {"ok": False, "error": "not alive"}
    return {
        "router": {"node_id": router.config.node_id, "zone": router.config.zone, "dev": router.config.dev},
        "time": int(time.time() * 1000),
        "members": members,
        "frontends": frontends,
    }


async def fetch_json(pool: FrontendPool, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """GET ``path`` on a pooled connection and return the decoded JSON body.

    A reused connection that turns out closed is retried once on a fresh one. Raise TargetRefused,
    a stream error, ``h11.ProtocolError`` or ValueError (non-200 status, bad or oversized body).
    """
    for fresh in (False, True):
        up = await pool.acquire(fresh=fresh)
        ok = False
        started = False
        try:
            request = h11.Request(
                method=b"GET",
                target=path.encode(),
                headers=[(b"host", pool.address.encode()), (b"accept", _JSON), *(headers or [])],
            )
            head = up.conn.send(request) or b""
            await up.stream.send_all(head + (up.conn.send(h11.EndOfMessage()) or b""))
            status = 0
            body = bytearray()
            while True:
                event = up.conn.next_event()
                if event is h11.NEED_DATA:
                    data = await up.stream.receive_some(65536)
                    started = started or bool(data)
                    up.conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_FRONTEND_BODY:
                        raise ValueError(f"{path} body too large")
                elif isinstance(event, h11.EndOfMessage):
                    ok = True
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("frontend closed the connection")
        except (*proxy.STREAM_ERRORS, h11.RemoteProtocolError):
            if up.reused and not started and not fresh:
                continue
            raise
        finally:
            if ok:
                await pool.release(up)
            else:
                await up.aclose()
        if status != 200:
            raise ValueError(f"{path} answered {status}")
        return json.loads(body)
    raise AssertionError("unreachable")

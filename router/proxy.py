"""Moving bytes to the chosen frontend: WebSocket byte pipes and HTTP forwarding.

- A WebSocket upgrade is not terminated here. Once a target accepts the TCP connection, the
  client's request head (plus ``X-Forwarded-For``) and any bytes that followed it are replayed, and
  then both directions are copied until each side has closed (half-close is passed on, so a close
  handshake completes; ``PIPE_CLOSE_GRACE_S`` bounds the wait for the second side).
- Any other request is forwarded on a pooled keep-alive h11 connection: the (bounded) request body
  is buffered so that a stale pooled connection can be retried on a fresh one, and the response is
  streamed back as it arrives (a Comet stream or long-poll may stay open for a long time).
- When no frontend can take a WebSocket, the upgrade is still accepted and DISCONNECTED with error
  80003 is sent in-band before closing (PROTOCOL.md 1.5: errors must be sent in-band); plain HTTP
  gets a 503 with an Ably-style JSON error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import h11
import trio

from kernel import http
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import Action, encode_wire
from kernel.sockread import read_ready
from kernel.wsframe import OPCODE_BINARY, OPCODE_TEXT, frame
from router.pool import FrontendPool, Upstream

PIPE_BUFFER = 65536
PIPE_FAIR_CHUNKS = 8  # chunks a pipe direction copies between two scheduler passes when never waiting
PIPE_CLOSE_GRACE_S = 5.0
CLOSE_DRAIN_S = 1.0
OPCODE_CLOSE = 0x8
WS_CLOSE_NORMAL = 1000
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect", b"content-length",
})
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"x-ably-errorcode, x-ably-errormessage, link"),
]
STREAM_ERRORS = http.STREAM_ERRORS


class StaleConnection(Exception):
    """A reused pooled connection was found closed before any response byte: retry on a fresh one."""


class UpstreamFailed(Exception):
    """The frontend broke the exchange after the response had started; the client connection ends."""


def accept_token(key: bytes) -> bytes:
    """RFC 6455 Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


header = http.header


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]], peer: str) -> bytes:
    previous = header(headers, b"x-forwarded-for")
    return (previous + b", " + peer.encode()) if previous else peer.encode()


def request_head(req: h11.Request, peer: str) -> bytes:
    """The request head as the client sent it (lower-cased names), with ``X-Forwarded-For`` added."""
    lines = [b"%s %s HTTP/%s" % (req.method, req.target, req.http_version)]
    lines += [b"%s: %s" % (k, v) for k, v in req.headers if k != b"x-forwarded-for"]
    lines.append(b"x-forwarded-for: " + _forwarded_for(req.headers, peer))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def unavailable_error(message: str) -> ErrorInfo:
    """80003 with HTTP status 503: no frontend can take the request right now; retry."""
    return ErrorInfo(code=int(ErrorCode.DISCONNECTED), status_code=int(HTTPStatus.SERVICE_UNAVAILABLE),
                     message=message)


# ------------------------------------------------------------------------------------ WebSocket


async def send_eof(stream: trio.abc.Stream) -> None:
    """Half-close ``stream`` if it can (TCP); a TLS stream cannot, so it is closed instead."""
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    else:
        await stream.aclose()


async def _copy_socket(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    """Copy ``src`` to ``dst`` until ``src``'s EOF, with plain non-blocking reads and writes on the
    two sockets: trio's ``receive_some`` and ``send_all`` each take a scheduler pass (and their
    epoll registration changes) even when the kernel is ready, which was most of the router's CPU
    at max rate (issue 16: 0.78x direct). Here a chunk costs one wait, and only when there is
    nothing to read or the kernel will not take more; a pass every ``PIPE_FAIR_CHUNKS`` chunks keeps
    a busy pipe from starving the others. Only this task reads ``src`` and writes ``dst``."""
    chunks = 0
    while True:
        data = await read_ready(src.socket, PIPE_BUFFER)
        if not data:
            return
        drained = len(data) < PIPE_BUFFER  # the kernel had no more: wait before the next read
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(dst.socket.fileno(), view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(dst.socket)
        if drained:
            # A read now would most often find nothing (one frame per wake-up when paced): skip
            # that syscall and wait. EOF and resets show as readable too.
            await trio.lowlevel.wait_readable(src.socket)
            continue
        chunks += 1
        if chunks % PIPE_FAIR_CHUNKS == 0:
            await trio.lowlevel.checkpoint()


async def pipe(client: trio.abc.Stream, upstream: trio.SocketStream, preamble: bytes) -> None:
    """Send ``preamble`` upstream, then copy both ways until both sides closed (or one broke)."""

    async def copy(src: trio.abc.Stream, dst: trio.abc.Stream, scope: trio.CancelScope) -> None:
        try:
            if isinstance(src, trio.SocketStream) and isinstance(dst, trio.SocketStream):
                await _copy_socket(src, dst)
            else:  # TLS: trio's streams do the record layer
                while data := await src.receive_some(PIPE_BUFFER):
                    await dst.send_all(data)
            await send_eof(dst)
        except STREAM_ERRORS:
            scope.cancel()  # a reset or a write to a closed socket: nothing more can pass
            return
        # One side finished cleanly; give the other a bounded time to finish its half.
        scope.deadline = min(scope.deadline, trio.current_time() + PIPE_CLOSE_GRACE_S)

    try:
        await upstream.send_all(preamble)
    except STREAM_ERRORS:
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(copy, client, upstream, nursery.cancel_scope)
        nursery.start_soon(copy, upstream, client, nursery.cancel_scope)


async def refuse_websocket(stream: trio.abc.Stream, conn: h11.Connection, req: h11.Request,
                           fmt: str, error: ErrorInfo) -> None:
    """Accept the upgrade, send DISCONNECTED with ``error`` in ``fmt``, close the WebSocket cleanly."""
    key = header(req.headers, b"sec-websocket-key")
    if key is None or header(req.headers, b"sec-websocket-version") != b"13":
        await respond(stream, conn, HTTPStatus.BAD_REQUEST, b"text/plain",
                      b"websocket upgrade needs version 13 and a key\n")
        return
    accept = h11.InformationalResponse(status_code=101, reason=b"Switching Protocols", headers=[
        (b"upgrade", b"websocket"), (b"connection", b"Upgrade"), (b"sec-websocket-accept", accept_token(key)),
    ])
    wire = {"action": int(Action.DISCONNECTED), "error": error.to_wire()}
    if fmt == "msgpack":
        message = frame(OPCODE_BINARY, encode_wire(wire, "msgpack"))
    else:
        message = frame(OPCODE_TEXT, encode_wire(wire, "json"))
    close = frame(OPCODE_CLOSE, WS_CLOSE_NORMAL.to_bytes(2, "big"))
    await stream.send_all((conn.send(accept) or b"") + message + close)
    await send_eof(stream)
    with trio.move_on_after(CLOSE_DRAIN_S):  # read the client's close so our close sends no RST
        while await stream.receive_some(PIPE_BUFFER):
            pass


# ------------------------------------------------------------------------------------ plain HTTP


async def respond(stream: trio.abc.Stream, conn: h11.Connection, status: int, ctype: bytes, body: bytes,
                  extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send one complete response on the client connection."""
    await http.respond(conn, stream, status, ctype, body, [*_CORS, *extra])


async def respond_error(stream: trio.abc.Stream, conn: h11.Connection, error: ErrorInfo,
                        headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """An Ably-style JSON error body, with the ``x-ably-errorcode`` headers browsers can read."""
    body = json.dumps({"error": error.to_wire()}).encode()
    extra = [(b"x-ably-errorcode", str(error.code).encode()),
             (b"x-ably-errormessage", error.message.encode("latin-1", "replace")), *headers]
    await respond(stream, conn, error.status_code, b"application/json", body, extra)


def _forward_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    named = header(headers, b"connection") or b""
    extra_hop = {n.strip().lower() for n in named.split(b",") if n.strip()}
    return [(k, v) for k, v in headers if k not in _HOP_BY_HOP and k not in extra_hop]


def upstream_request(
    req: h11.Request, body: bytes, peer: str, router_id: str = "router", now_us: int | None = None
) -> h11.Request:
    """The request to send to the frontend: end-to-end headers, a fixed length, ``X-Forwarded-For``,
    and who forwarded it when (``http.FORWARDED``: ``router_id`` and our wall clock, unless
    ``now_us``; a client's own value is dropped). Built once per client request, so a retry on a
    fresh pooled connection carries the same stamp."""
    stamp = now_us if now_us is not None else time.time_ns() // 1000
    own = (b"x-forwarded-for", http.FORWARDED)
    headers = [(k, v) for k, v in _forward_headers(req.headers) if k not in own]
    headers.append((b"x-forwarded-for", _forwarded_for(req.headers, peer)))
    headers.append((http.FORWARDED, http.forwarded_stamp(router_id, stamp)))
    if body or req.method in (b"POST", b"PUT", b"PATCH"):
        headers.append((b"content-length", str(len(body)).encode()))
    return h11.Request(method=req.method, target=req.target, headers=headers)


async def _next_upstream_event(up: Upstream) -> Any:
    while True:
        event = up.conn.next_event()
        if event is h11.NEED_DATA:
            up.conn.receive_data(await up.stream.receive_some(PIPE_BUFFER))
            continue
        return event


async def exchange(pool: FrontendPool, up: Upstream, request: h11.Request, body: bytes,
                   client: trio.abc.Stream, client_conn: h11.Connection, timeout_s: float) -> int:
    """Send ``request`` on ``up`` and stream the response to the client; return the status.

    Raise StaleConnection if a reused ``up`` failed before any response byte (the caller retries on
    a fresh connection), UpstreamFailed if the frontend broke the exchange (or timed out) after or
    before the response started, and a stream error if the client went away. ``up`` is returned to
    ``pool`` or closed on every path.
    """
    ok = False
    try:
        try:
            data = up.conn.send(request) or b""
            if body:
                data += up.conn.send(h11.Data(data=body)) or b""
            await up.stream.send_all(data + (up.conn.send(h11.EndOfMessage()) or b""))
            with trio.fail_after(timeout_s):
                while True:
                    event = await _next_upstream_event(up)
                    if isinstance(event, h11.Response):
                        break
                    if not isinstance(event, h11.InformationalResponse):
                        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} from frontend")
        except (*STREAM_ERRORS, h11.RemoteProtocolError, h11.LocalProtocolError, trio.TooSlowError) as exc:
            if up.reused and not isinstance(exc, trio.TooSlowError):
                raise StaleConnection(repr(exc)) from None
            raise UpstreamFailed(repr(exc)) from None
        head = h11.Response(status_code=event.status_code, reason=event.reason,
                            headers=_forward_headers(event.headers) + _content_length(event.headers))
        await client.send_all(client_conn.send(head) or b"")
        while True:
            try:
                event = await _next_upstream_event(up)
            except (*STREAM_ERRORS, h11.RemoteProtocolError) as exc:
                raise UpstreamFailed(repr(exc)) from None
            if isinstance(event, h11.Data):
                await client.send_all(client_conn.send(h11.Data(data=event.data)) or b"")
            elif isinstance(event, h11.EndOfMessage):
                await client.send_all(client_conn.send(h11.EndOfMessage()) or b"")
                ok = True
                return head.status_code
            else:
                raise UpstreamFailed(f"unexpected {type(event).__name__} in response body")
    finally:
        if ok:
            await pool.release(up)
        else:
            await up.aclose()


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    length = header(headers, b"content-length")
    return [(b"content-length", length)] if length is not None else []

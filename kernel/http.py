"""The h11 request loop both daemons' front doors run, and the small pieces around it.

Theory of operation. ``serve_http`` owns one client byte stream: it reads a request head within
``header_timeout_s`` (no slowloris; a head is at most ``MAX_HEAD_BYTES``), hands the request to
the daemon's ``dispatch`` (which reads the body with ``read_body`` if it wants it and answers with
``respond``, or takes the stream over, e.g. for a WebSocket), and then either starts the next
keep-alive cycle or ends. Malformed HTTP is answered with h11's suggested status (when a response
can still be sent) and reported to ``on_protocol_error``; a vanished client ends the loop quietly.
The stream is closed on every path. Status lines carry their reason phrase (``200 OK``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

import h11
import trio

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
RECEIVE_BYTES = 65536
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

# What runs on a stream once its HTTP is over (a WebSocket after its 101): ``serve_http`` drops
# the h11 connection and the request first, so a long-lived upgraded connection does not keep
# ~3 KB of parser state, headers and request target alive for its whole life.
Handover = Callable[[], Awaitable[None]]

# dispatch(conn, stream, request) -> whether the connection may carry another request, or the
# Handover that takes the stream over.
Dispatch = Callable[[h11.Connection, trio.abc.Stream, h11.Request], Awaitable[bool | Handover]]


def reason(status: int) -> bytes:
    """The reason phrase of ``status`` (``b"Not Found"``); empty for a code HTTP does not name."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or None."""
    for k, v in headers:
        if k == name:
            return v
    return None


# Which router forwarded a request to a frontend and when, by its wall clock in microseconds:
# ``<router id> <us>``, one value per client request (a retry on a fresh pooled connection carries the
# same). A Comet request is one of a series on one transport, and a frontend tells a request that
# arrives late (held in a partition's TCP buffers, or sent again by the router after the first copy
# was answered) from the transport's own by it (``frontend/comet.py``).
FORWARDED = b"x-continuity-forwarded"


def forwarded_stamp(router_id: str, now_us: int) -> bytes:
    return f"{router_id} {now_us}".encode()


def forwarded(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, int] | None:
    """The ``FORWARDED`` stamp of a request as ``(router id, us)``, or None (none, or malformed)."""
    raw = header(headers, FORWARDED)
    if raw is None or len(raw) > 200:
        return None
    router, _, us = raw.decode("latin-1").rpartition(" ")
    if not router or not us.isdigit() or len(us) > 20:
        return None
    return router, int(us)


def is_websocket(req: h11.Request) -> bool:
    """Whether ``req`` asks for a WebSocket upgrade."""
    upgrade = (header(req.headers, b"upgrade") or b"").lower()
    connection = (header(req.headers, b"connection") or b"").lower()
    return req.method == b"GET" and upgrade == b"websocket" and b"upgrade" in connection


def peer_of(stream: trio.abc.Stream) -> str:
    """The client's IP address as text ("unknown" if the stream has no socket)."""
    while not isinstance(stream, trio.SocketStream):
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return "unknown"
        stream = inner
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


async def next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    """The next h11 event, reading as needed; None when h11 is paused (after a complete request)."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(RECEIVE_BYTES)))
            continue
        if event is h11.PAUSED:
            return None
        return event


async def read_body(conn: h11.Connection, stream: trio.abc.Stream, limit: int = MAX_BODY_BYTES) -> bytes:
    """The rest of the current request's body; 413 (via RemoteProtocolError) beyond ``limit``."""
    body = bytearray()
    while True:
        event = await next_event(conn, stream)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage) or event is None:
            return bytes(body)
        else:
            raise h11.RemoteProtocolError("unexpected event in body")


async def respond(conn: h11.Connection, stream: trio.abc.Stream, status: int, ctype: bytes, body: bytes,
                  headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send one complete response (with a content length and the reason phrase)."""
    head = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *headers]
    data = conn.send(h11.Response(status_code=status, headers=head, reason=reason(status))) or b""
    data += conn.send(h11.Data(data=body)) or b"" if body else b""
    await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))


async def serve_http(
    stream: trio.abc.Stream,
    dispatch: Dispatch,
    *,
    header_timeout_s: float,
    on_header_timeout: Callable[[], None] = lambda: None,
    on_protocol_error: Callable[[h11.RemoteProtocolError], None] = lambda exc: None,
    error_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Serve requests on ``stream`` until the client leaves, ``dispatch`` returns False, or a
    request or response says the connection must close; or run the Handover ``dispatch``
    returned, with the HTTP state gone. Closes ``stream``."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    handover: Handover | None = None
    try:
        while True:
            with trio.move_on_after(header_timeout_s) as timeout:
                event = await next_event(conn, stream)
            if timeout.cancelled_caught:
                on_header_timeout()
                break
            if not isinstance(event, h11.Request):
                break
            verdict = await dispatch(conn, stream, event)
            if callable(verdict):
                handover = verdict  # the stream stays open for it
                break
            if not verdict or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        on_protocol_error(exc)
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await respond(conn, stream, exc.error_status_hint, b"text/plain", b"bad request\n",
                              error_headers)
            except (h11.LocalProtocolError, *STREAM_ERRORS):
                pass
    except STREAM_ERRORS:
        pass
    finally:
        if handover is None:
            await trio.aclose_forcefully(stream)
    del conn  # the HTTP state is gone before a handover runs (a WebSocket lives for hours)
    if handover is not None:
        try:
            await handover()
        except STREAM_ERRORS:
            pass  # the client vanished: quietly, as inside the request loop
        finally:
            await trio.aclose_forcefully(stream)

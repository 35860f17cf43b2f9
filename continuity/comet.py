"""Comet: the HTTP long-poll transport of PROTOCOL.md 6.2, as a client transport driver.

Theory of operation
-------------------
One Comet transport is a series of HTTP/1.1 requests on two keep-alive lanes,
as ably-js's Node transport keeps them, so a long-poll in flight never blocks
a send:

* the **recv lane** carries ``GET /comet/connect`` (the first receive: the
  WebSocket's query minus ``format``, with ``heartbeats=true``, and
  ``resume=``/``recover=`` from the session), then back-to-back
  ``GET /comet/<connectionKey>/recv`` long-polls;
* the **send lane** carries ``POST /comet/<connectionKey>/send`` (a JSON array
  of every frame the session has drained, one request in flight at a time) and
  ``GET /comet/<connectionKey>/close`` for CLOSE (RTN12).

Every response body is a stream of lines, each a JSON array of
ProtocolMessages; ``[]``, an empty 200 and a 204 carry nothing. Lines are
delivered to the session as they complete, so a server that streams works as
well as one that ends each answer. The key goes raw into the path (ably-js
inserts it unescaped) and is re-read before every request: a resume may change
it (RTN15e).

The transport holds no continuity state of its own: the session (``ClientSession``)
does. Anything that ends a request badly (a reset, a non-2xx status, a
malformed body, a recv that outlasts ``maxIdleInterval + request_timeout`` or a
send that outlasts ``request_timeout``) raises, and the Connection treats it as
transport loss and resumes exactly as for a WebSocket. An in-band DISCONNECTED
ends the transport through the session (``TransportDropped``).

It talks to its Connection only through ``continuity.transport.Link``:
``reached()`` once TCP to the server is up, ``opened()`` at the first bytes of
``/comet/connect`` (the fallback logic reads both), ``deliver()`` per line.

``CometDecoder`` and the body/target helpers are pure; ``HttpLane`` and
``run_comet`` are the trio driver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import h11
import trio

from continuity.transport import CometError, Link
from kernel.errors import ErrorInfo, RemoteProtocolError
from kernel.protocol import Action, ProtocolMessage, decode_json_array, encode_json_array

COMET_PREFIX = "/comet/"
# Query parameters that authenticate recv/send/close (PROTOCOL.md 6.2: "auth only").
AUTH_PARAMS = ("key", "access_token", "accessToken")
# Largest response head we accept, in bytes.
MAX_HEAD_BYTES = 64 * 1024
# Read size per receive_some, in bytes.
READ_CHUNK = 65536
# Bound on a recv when the server gave no maxIdleInterval (ably-js recvTimeout), seconds.
DEFAULT_RECV_TIMEOUT = 90.0


class CometDecoder:
    """Split a (possibly streamed) response body into lines and decode each as a JSON array.

    ``feed`` returns the frames of every line completed so far; ``end`` those of a last
    line without ``\\n`` (Node's reader drops it; being lenient costs nothing). Raises
    RemoteProtocolError on a line that is not an array of ProtocolMessages.
    """

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[ProtocolMessage]:
        self._buffer += data
        if b"\n" not in data:
            if len(self._buffer) > self._max_size:
                raise RemoteProtocolError(f"comet line exceeds {self._max_size} bytes")
            return []
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        return [pm for line in lines for pm in self._line(line)]

    def end(self) -> list[ProtocolMessage]:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return self._line(rest)

    def _line(self, line: bytes) -> list[ProtocolMessage]:
        if not line.strip():
            return []
        if not line.lstrip().startswith(b"["):
            raise RemoteProtocolError("comet body line is not a JSON array")
        return decode_json_array(line, max_size=self._max_size)


def error_info(status: int, body: bytes) -> ErrorInfo:
    """The ErrorInfo of a non-2xx answer: ``body.error`` if it has one, else one made from the status."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raw = None
    info = ErrorInfo.from_wire(raw.get("error")) if isinstance(raw, dict) else None
    if info is not None:
        return info
    return ErrorInfo(code=80003, status_code=status, message=f"comet request answered HTTP {status}")


def send_body(frames: list[ProtocolMessage]) -> bytes:
    """A ``/send`` body: the JSON array of ``frames`` (PROTOCOL.md 6.2), newline-terminated."""
    return encode_json_array(frames)


def connect_target(params: Mapping[str, str]) -> str:
    """``/comet/connect?...``: the WebSocket query minus ``format``, with ``heartbeats=true``."""
    query = {k: v for k, v in params.items() if k != "format"}
    query["heartbeats"] = "true"
    return f"{COMET_PREFIX}connect?{urlencode(query)}"


def op_target(key: str, op: str, params: Mapping[str, str]) -> str:
    """``/comet/<key>/<op>?<auth>``; the key goes in raw, as ably-js puts it."""
    auth = {k: v for k, v in params.items() if k in AUTH_PARAMS}
    return f"{COMET_PREFIX}{key}/{op}?{urlencode(auth)}"


class HttpLane:
    """One keep-alive HTTP/1.1 client connection, opened on first use and reopened when spent."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._stream: trio.SocketStream | None = None
        self._conn: h11.Connection | None = None
        self.opened = 0

    async def connect(self) -> tuple[h11.Connection, trio.SocketStream]:
        """The open connection, opening a new one unless the last is idle and reusable.

        Raises OSError if the server cannot be reached."""
        if self._stream is None or self._conn is None or self._conn.our_state is not h11.IDLE:
            self.close()
            self._stream = await trio.open_tcp_stream(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
            self.opened += 1
        return self._conn, self._stream

    async def request(self, method: str, target: str, on_data: Callable[[int, bytes], None],
                      body: bytes = b"") -> int:
        """Send one request; pass ``(status, chunk)`` per body chunk to ``on_data``; return the
        status once the response ends.

        Raises OSError / trio.BrokenResourceError on a network failure and CometError on an
        HTTP protocol error. Bound it with a cancel scope: this never times out on its own.
        """
        conn, stream = await self.connect()
        headers = [("host", f"{self.host}:{self.port}"), ("accept", "application/json")]
        if method == "POST":
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        try:
            data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            await stream.send_all(data)
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(READ_CHUNK))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    on_data(status, bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("connection closed before the response ended")
        except h11.ProtocolError as exc:
            self.close()
            raise CometError(f"HTTP protocol error: {exc}") from None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()
        return status

    def close(self) -> None:
        if self._stream is not None:
            self._stream.socket.close()
        self._stream = self._conn = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CometTarget:
    """Where and how to reach the server: host, port, the connect query and the timeouts (seconds)."""

    host: str
    port: int
    params: Mapping[str, str]
    request_timeout: float
    max_size: int


async def _exchange(lane: HttpLane, link: Link, target: CometTarget, method: str, path: str,
                    body: bytes = b"", *, first: bool = False) -> None:
    """One request: deliver its frames as their lines complete; raise CometError on a bad answer."""
    decoder = CometDecoder(target.max_size)
    error = bytearray()
    seen: list[bool] = []

    def on_data(status: int, data: bytes) -> None:
        if status >= 300:
            if len(error) < target.max_size:
                error.extend(data)
            return
        if first and not seen:
            seen.append(True)
            link.opened()
        frames = decoder.feed(data)
        if frames:
            link.deliver(frames)

    status = await lane.request(method, path, on_data, body)
    if status >= 300 or status < 200:
        # Not an array: a network-level failure for us, carrying the server's reason. The
        # frontend answers every protocol error in-band (200 + array), so a bare HTTP error
        # means a proxy or a router without Comet: resume or retry, never fail the connection.
        raise CometError(f"{method} {path.split('?')[0]} answered HTTP {status}",
                         error_info(status, bytes(error)))
    frames = decoder.end()
    if frames:
        link.deliver(frames)
    if first and not seen:
        link.opened()
    link.activity()


async def run_comet(link: Link, target: CometTarget) -> None:
    """Run one Comet transport until it fails (raises) or the caller cancels it.

    Raises OSError, trio.BrokenResourceError, CometError, RemoteProtocolError or
    trio.TooSlowError: each is transport loss.
    """
    recv_lane = HttpLane(target.host, target.port)
    send_lane = HttpLane(target.host, target.port)
    try:
        with trio.fail_after(target.request_timeout):
            await recv_lane.connect()
            link.reached()
            await _exchange(recv_lane, link, target, "GET", connect_target(target.params), first=True)
        if link.key is None:
            raise CometError("comet connect answered without CONNECTED")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sender, send_lane, link, target)
            await _receiver(recv_lane, link, target)
    finally:
        recv_lane.close()
        send_lane.close()


async def _receiver(lane: HttpLane, link: Link, target: CometTarget) -> None:
    while True:
        key = link.key
        if key is None:
            raise CometError("no connection key to poll with")
        with trio.fail_after(link.recv_timeout):
            await _exchange(lane, link, target, "GET", op_target(key, "recv", target.params))


async def _sender(lane: HttpLane, link: Link, target: CometTarget) -> None:
    while True:
        frames = link.outgoing()
        if not frames:
            await link.wait_outgoing()
            continue
        key = link.key
        if key is None:
            raise CometError("no connection key to send with")
        closing = [i for i, pm in enumerate(frames) if pm.action == Action.CLOSE]
        before = frames[: closing[0]] if closing else frames
        with trio.fail_after(target.request_timeout):
            if before:
                await _exchange(lane, link, target, "POST", op_target(key, "send", target.params),
                                send_body(before))
            if closing:
                # RTN12 over Comet: /close; the node disposes the session and answers CLOSED.
                await _exchange(lane, link, target, "GET", op_target(key, "close", target.params))

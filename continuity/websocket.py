"""The WebSocket transport driver: one WebSocket, pumped until it fails.

A reader decodes every inbound message (``format`` json or msgpack) and hands it
to the Link; a writer sends what the Link drains. Either one's failure ends
both. The TCP stream is ours (not trio-websocket's), so that it is closed on
every path.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection

from continuity.transport import Link
from kernel.protocol import Format, decode, encode


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketTarget:
    """Where to open the WebSocket: host, port, the request target (path and query), the frame
    format, the largest inbound message (bytes) and the bound on TCP connect and handshake (seconds)."""

    host: str
    port: int
    resource: str
    format: Format
    max_size: int
    request_timeout: float


async def run_websocket(link: Link, target: WebSocketTarget) -> None:
    """Open one WebSocket and pump it until it fails (raises) or the caller cancels it.

    Raises one of ``continuity.transport.TRANSPORT_ERRORS`` (alone or in an ExceptionGroup):
    trio.TooSlowError if TCP connect or the opening handshake outlasts ``request_timeout``,
    trio_websocket.ConnectionRejected if the server answers the upgrade with an HTTP status.
    """
    stream: trio.SocketStream | None = None
    try:
        with trio.fail_after(target.request_timeout):
            stream = await trio.open_tcp_stream(target.host, target.port)
        link.reached()
        async with trio.open_nursery() as nursery:
            with trio.fail_after(target.request_timeout):
                ws = await _open_handshake(nursery, stream, f"{target.host}:{target.port}",
                                           target.resource, target.max_size)
            link.opened()
            # Whichever of reader and writer raises first ends the other (the nursery cancels it).
            nursery.start_soon(_writer, link, ws, target)
            await _reader(link, ws, target)
    finally:
        if stream is not None:
            stream.socket.close()


async def _reader(link: Link, ws: trio_websocket.WebSocketConnection, target: WebSocketTarget) -> None:
    while True:
        frame = await ws.get_message()
        link.deliver([decode(frame, target.format, max_size=target.max_size)])


async def _writer(link: Link, ws: trio_websocket.WebSocketConnection, target: WebSocketTarget) -> None:
    while True:
        frames = link.outgoing()
        if not frames:
            await link.wait_outgoing()
            continue
        for pm in frames:
            data = encode(pm, target.format)
            await ws.send_message(data.decode("utf-8") if target.format == "json" else data)


async def _open_handshake(nursery: trio.Nursery, stream: trio.SocketStream, host: str,
                          resource: str, max_size: int) -> trio_websocket.WebSocketConnection:
    """``trio_websocket.wrap_client_stream``, minus its hang.

    trio-websocket 0.12.2 waits for the opening handshake on an event that its reader task never
    sets if the peer resets the socket first, so a connect during a network cut would hang until
    the connect timeout. Here the reader's end also ends the wait (private attributes, pinned to
    the 0.12 internals; the caller closes the stream on every path).
    """
    ws = trio_websocket.WebSocketConnection(
        stream, WSConnection(ConnectionType.CLIENT), host=host, path=resource,
        message_queue_size=64, max_message_size=max_size,
    )
    handshake: trio.Event = ws._open_handshake
    reader_ended = False

    async def read() -> None:
        nonlocal reader_ended
        try:
            await ws._reader_task()
        finally:
            reader_ended = True
            handshake.set()

    nursery.start_soon(read)
    await handshake.wait()
    if reader_ended or ws.closed is not None:
        # Not open. A reader that raised (ConnectionRejected: the upgrade was answered with an
        # HTTP status) has cancelled the nursery: this checkpoint lets that reach the caller.
        await trio.lowlevel.checkpoint()
        if ws.closed is not None:
            raise trio_websocket.ConnectionClosed(ws.closed)
        raise trio.BrokenResourceError("the WebSocket ended before its opening handshake")
    return ws

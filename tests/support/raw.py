"""A raw WebSocket client speaking ProtocolMessages by hand, for tests that must misbehave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode, urlsplit

import trio
import trio_websocket

from kernel.protocol import Action, Format, ProtocolMessage, decode, encode

MAX_FRAME = 64 * 1024 * 1024


class RawClient:
    """One WebSocket; frames in and out are ProtocolMessages (or raw bytes/text when asked)."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, fmt: Format) -> None:
        self.ws = ws
        self.format = fmt

    async def send(self, pm: ProtocolMessage) -> None:
        data = encode(pm, self.format)
        await self.ws.send_message(data.decode() if self.format == "json" else data)

    async def send_frame(self, frame: str | bytes) -> None:
        await self.ws.send_message(frame)

    async def recv(self) -> ProtocolMessage:
        return decode(await self.ws.get_message(), self.format, max_size=MAX_FRAME)

    async def recv_action(self, *actions: Action) -> ProtocolMessage:
        """The next message with one of ``actions``, skipping others (e.g. HEARTBEAT)."""
        while True:
            pm = await self.recv()
            if pm.action in actions:
                return pm

    async def closed(self) -> None:
        """Read until the server closes the socket."""
        try:
            while True:
                await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            return


@asynccontextmanager
async def raw_connect(base_url: str, *, fmt: Format = "json", **params: str) -> AsyncIterator[RawClient]:
    """Open ``base_url/?format=fmt&v=6&...``; yields before reading CONNECTED.

    The TCP stream is ours and closed on every path (trio-websocket 0.12 can leak it when the
    server closes abnormally).
    """
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    resource = "/?" + urlencode({"format": fmt, "v": "6", **params})
    stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, f"{host}:{port}", resource, max_message_size=MAX_FRAME
            )
            try:
                yield RawClient(ws, fmt)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        stream.socket.close()

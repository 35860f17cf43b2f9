"""A TCP proxy that lets plain HTTP through and blocks WebSocket upgrades, as some corporate
proxies do. For the client's WebSocket -> Comet fallback tests.

``UpgradeGate(host, port, mode)`` listens on 127.0.0.1:0. It reads the head of the first
request on each accepted connection; a WebSocket upgrade (``Upgrade: websocket``) is blocked
according to ``mode``:

* ``"reject"``: answer ``403 Forbidden`` with a short body, then close (trio-websocket raises
  ConnectionRejected);
* ``"close"``: close the connection without a word;
* ``"hang"``: read and never answer, until the client gives up.

Anything else (Comet, /health) is forwarded byte for byte to the target, including the head
already read, for the life of the connection (keep-alive included: only the first request of a
connection is looked at, so a client must open a fresh connection for an upgrade, as every
WebSocket client does). ``upgrades_blocked`` and ``forwarded`` count connections.
"""

from __future__ import annotations

from typing import Literal

import trio

Mode = Literal["reject", "close", "hang"]
MAX_HEAD = 64 * 1024
REJECT_BODY = b"websockets not allowed\n"
REJECT = (b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n"
          + f"content-length: {len(REJECT_BODY)}\r\n\r\n".encode() + REJECT_BODY)


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head asks for a WebSocket upgrade."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class UpgradeGate:
    """Start it with ``await nursery.start(gate.serve)``; ``url`` is its ``ws://`` address."""

    def __init__(self, target_host: str, target_port: int, mode: Mode) -> None:
        self.target = (target_host, target_port)
        self.mode = mode
        self.port = 0
        self.upgrades_blocked = 0
        self.forwarded = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            head = bytearray()
            while b"\r\n\r\n" not in head:
                data = await _receive(client)
                if not data or len(head) > MAX_HEAD:
                    return
                head += data
            if is_websocket_upgrade(bytes(head)):
                self.upgrades_blocked += 1
                if self.mode == "reject":
                    await _send(client, REJECT)
                elif self.mode == "hang":
                    while await _receive(client):
                        pass
                return
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            self.forwarded += 1
            async with upstream, trio.open_nursery() as nursery:
                await upstream.send_all(bytes(head))
                nursery.start_soon(_copy, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_copy, upstream, client, nursery.cancel_scope)


async def _receive(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some(65536)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _copy(src: trio.SocketStream, dst: trio.SocketStream, done: trio.CancelScope) -> None:
    """Copy until either side closes, then end both directions."""
    try:
        while data := await _receive(src):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()

"""The transport seam: one `Transport` protocol, and its real implementation on trio (UDP + TCP).

Datagrams carry probes and gossip; a stream is one TCP connection carrying one length-prefixed message
(a push-pull full state), so the core only ever sees whole messages. `MemoryNetwork` (memory.py) is
the in-memory implementation of the same protocol.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from .wire import MAX_STREAM_BYTES, Address

# Datagrams are read into a buffer this big, so an oversized one is seen (and counted) whole.
_RECV_BUFFER = 65536
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One datagram, or one whole stream message (`stream=True`), and who sent it."""

    src: Address
    data: bytes
    stream: bool = False


class Transport(Protocol):
    """What the member driver needs from a network."""

    @property
    def local_address(self) -> Address:
        """Return the address the transport is bound to (the port is real even after binding port 0)."""
        ...

    async def send_packet(self, dst: Address, data: bytes) -> None:
        """Send one datagram; a failure is silent (gossip tolerates loss)."""
        ...

    async def send_stream(self, dst: Address, data: bytes) -> None:
        """Deliver one message reliably over a fresh connection; raise `OSError` on failure."""
        ...

    async def receive(self) -> Received:
        """Return the next datagram or stream message."""
        ...


class UdpTcpTransport:
    """UDP datagrams and TCP streams on one host:port, on trio."""

    def __init__(self, udp: trio.socket.SocketType, address: Address, stream_timeout: float) -> None:
        self._udp = udp
        self._address = address
        self._stream_timeout = stream_timeout
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[Received](4096)
        # Datagrams dropped because the inbox was full, and streams refused as oversized or slow.
        self.inbox_overflows = 0
        self.bad_streams = 0

    @property
    def local_address(self) -> Address:
        return self._address

    async def send_packet(self, dst: Address, data: bytes) -> None:
        try:
            await self._udp.sendto(data, dst)
        except OSError:
            pass  # unreachable peers are the failure detector's business, not ours

    async def send_stream(self, dst: Address, data: bytes) -> None:
        if len(data) > MAX_STREAM_BYTES:
            raise OSError(errno.EMSGSIZE, "stream message too large")
        with trio.fail_after(self._stream_timeout):
            stream = await trio.open_tcp_stream(dst[0], dst[1])
            async with stream:
                await stream.send_all(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> Received:
        return await self._inbox_receive.receive()

    def _deliver(self, item: Received) -> None:
        try:
            self._inbox_send.send_nowait(item)
        except trio.WouldBlock:
            self.inbox_overflows += 1

    async def _udp_loop(self) -> None:
        while True:
            try:
                data, addr = await self._udp.recvfrom(_RECV_BUFFER)
            except OSError:
                continue
            self._deliver(Received(src=(addr[0], addr[1]), data=data))

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        async with stream:
            peer = stream.socket.getpeername()
            with trio.move_on_after(self._stream_timeout) as scope:
                header = await _read_exactly(stream, _LENGTH.size)
                if header is None:
                    return
                (length,) = _LENGTH.unpack(header)
                if length > MAX_STREAM_BYTES:
                    self.bad_streams += 1
                    return
                body = await _read_exactly(stream, length)
                if body is None:
                    return
                self._deliver(Received(src=(peer[0], peer[1]), data=body, stream=True))
            if scope.cancelled_caught:
                self.bad_streams += 1


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(min(65536, n - len(buf)))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


@asynccontextmanager
async def open_udp_tcp_transport(
    host: str, port: int, *, stream_timeout: float = 10.0
) -> AsyncIterator[UdpTcpTransport]:
    """Bind UDP and TCP on `host:port` (port 0 picks one free for both) and serve until exit."""
    for _attempt in range(20):
        udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await udp.bind((host, port))
            bound_port = udp.getsockname()[1]
            listeners = await trio.open_tcp_listeners(bound_port, host=host)
        except OSError as exc:
            udp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the UDP port's TCP twin was taken: try another
            raise
        break
    else:
        raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")
    transport = UdpTcpTransport(udp, (host, bound_port), stream_timeout)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport._udp_loop)
            nursery.start_soon(trio.serve_listeners, transport._handle_stream, listeners)
            try:
                yield transport
            finally:
                nursery.cancel_scope.cancel()
    finally:
        udp.close()
        for listener in listeners:
            await trio.aclose_forcefully(listener)

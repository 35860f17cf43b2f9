"""The tunnel: a trio TCP fault proxy to put in front of a server in tests.

``Tunnel(host, port)`` listens on 127.0.0.1:0 and forwards every accepted
connection to the target. Faults:

* ``cut(duration)`` aborts every live connection (RST, as a network failure
  looks to both ends) and resets every new one for ``duration`` seconds;
* ``cut_forever()`` / ``restore()`` do the same without a time limit;
* ``hold()`` / ``release()`` stop forwarding server→client bytes (and stop
  reading them, so the server's socket backs up: a client that no longer
  reads). Data read while held is delivered on release unless a cut drops it.

With ``fallbacks`` (more ``(host, port)`` targets) it behaves as a load balancer: a connection
goes to the first target that accepts it, so a dead target is skipped.

``connections`` counts connections forwarded, ``refused`` those reset during a
cut, ``live`` the ones open now.
"""

from __future__ import annotations

import math
import socket
import struct
from dataclasses import dataclass, field

import trio

# A small receive buffer on the tunnel's upstream socket, so that hold() backs the server up quickly.
HELD_RCVBUF = 16 * 1024


def _abort(stream: trio.SocketStream | None) -> None:
    """Close with RST (SO_LINGER 0): the peer sees ECONNRESET, not a clean FIN."""
    if stream is None:
        return
    sock = stream.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@dataclass(eq=False)
class _Pair:
    client: trio.SocketStream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Tunnel:
    """A fault-injecting TCP forwarder. Start it with ``await nursery.start(tunnel.serve)``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        small_buffers: bool = True,
        fallbacks: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.target = (target_host, target_port)
        self.fallbacks = fallbacks
        self.small_buffers = small_buffers
        self.port = 0
        self.connections = 0
        self.refused = 0
        self._pairs: set[_Pair] = set()
        self._refuse_until = -math.inf
        self._gate = trio.Event()
        self._gate.set()

    @property
    def live(self) -> int:
        return len(self._pairs)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` of the tunnel's listening side."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def cutting(self) -> bool:
        return trio.current_time() < self._refuse_until

    def cut(self, duration: float) -> None:
        """Abort every live connection and reset new ones for ``duration`` seconds."""
        self._refuse_until = max(self._refuse_until, trio.current_time() + duration)
        self._abort_all()

    def cut_forever(self) -> None:
        self._refuse_until = math.inf
        self._abort_all()

    def restore(self) -> None:
        """Accept connections again (after cut_forever, or to end a cut early)."""
        self._refuse_until = -math.inf

    def hold(self) -> None:
        """Stop forwarding (and reading) server→client bytes."""
        if self._gate.is_set():
            self._gate = trio.Event()

    def release(self) -> None:
        self._gate.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)
        finally:
            self._abort_all()

    def _abort_all(self) -> None:
        for pair in list(self._pairs):
            _abort(pair.client)
            _abort(pair.upstream)
            pair.scope.cancel()
        self._pairs.clear()

    async def _connect_upstream(self) -> trio.SocketStream:
        for target in self.fallbacks:
            try:
                return await self._connect_to(self.target)
            except OSError:
                pass
            self.target, self.fallbacks = target, (*self.fallbacks[1:], self.target)
        return await self._connect_to(self.target)

    async def _connect_to(self, target: tuple[str, int]) -> trio.SocketStream:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if self.small_buffers:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HELD_RCVBUF)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.cutting:
            self.refused += 1
            _abort(client)
            return
        pair = _Pair(client=client)
        self._pairs.add(pair)
        try:
            with pair.scope:
                try:
                    pair.upstream = await self._connect_upstream()
                except OSError:
                    _abort(client)
                    return
                self.connections += 1
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, pair.upstream, False, nursery.cancel_scope)
                    nursery.start_soon(self._pump, pair.upstream, client, True, nursery.cancel_scope)
        finally:
            if pair in self._pairs:
                self._pairs.discard(pair)
                for stream in (pair.client, pair.upstream):
                    if stream is not None:
                        stream.socket.close()

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, downstream: bool, done: trio.CancelScope
    ) -> None:
        try:
            while True:
                if downstream:
                    await self._gate.wait()
                data = await src.receive_some(65536)
                if not data:
                    break
                if downstream:
                    await self._gate.wait()
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            done.cancel()

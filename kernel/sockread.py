"""Reading a plain trio socket with a plain non-blocking read (the frontend's WebSocket read loop
and the router's byte pipe).

trio's ``SocketStream.receive_some`` takes a scheduler pass even when the kernel has bytes, and its
epoll registration changes with every wait; at one frame per wake-up that was a large part of both
daemons' CPU (bench/README.md, issue 16). ``read_ready`` reads at once and waits only when the
kernel has nothing. The caller decides when to wait or yield before a read (after a short read the
next one would most often find nothing). The descriptor is looked up for every read: another task
may have closed the socket meanwhile, and its number could then name another connection.
"""

from __future__ import annotations

import os

import trio


async def read_ready(sock: trio.socket.SocketType, size: int) -> bytes:
    """Up to ``size`` bytes from ``sock`` (b"" at EOF), waiting only while there are none.
    ``trio.ClosedResourceError`` if the socket was closed, ``trio.BrokenResourceError`` on a reset."""
    while True:
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

"""Serving listeners, accepting every waiting connection per wake-up (``trio.serve_listeners``'s stand-in).

``trio.SocketListener.accept`` takes one connection and then yields a full scheduler pass (every
runnable task runs) before the next accept. A daemon that pipes thousands of connections therefore
accepts at its scheduler's pass rate, and a burst of reconnects waits in the kernel's listen queue:
in ``bench/failover.py`` (600 clients, 300 on the killed frontend, shared 2-core machine) the router's
listen queue held up to 298 connections and drained at 55-160 per second, 1.7-3.1 s (p50) of a
client's way back between its connect and the router reading its request. Here a plain TCP listener
is drained with non-blocking ``accept`` calls (up to ``BATCH`` per wake-up) and a handler task is
started for each; other listeners (TLS) keep trio's one-at-a-time accept.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import trio

log = structlog.get_logger("continuity.accept")

BATCH = 256  # connections accepted per wake-up before the loop yields
# As trio.serve_listeners: out of descriptors or memory, wait a little and accept again.
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CAPACITY_SLEEP_S = 0.1
# As trio.SocketListener.accept: a connection that failed before it was accepted is skipped.
IGNORED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPERM, errno.EPROTO})

Handler = Callable[[Any], Awaitable[object]]


async def serve_listeners(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[Any]],
    *,
    task_status: trio.TaskStatus[Sequence[trio.abc.Listener[Any]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on every listener until cancelled, each connection in a task of its own running
    ``handler(stream)``; reports ``listeners`` once every accept loop runs."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_serve_one, handler, listener, nursery)
        task_status.started(listeners)


async def _serve_one(handler: Handler, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
    async with listener:  # closed when serving ends, as trio.serve_listeners does
        if isinstance(listener, trio.SocketListener):
            await _serve_batched(handler, listener, nursery)
        else:
            await _serve_one_at_a_time(handler, listener, nursery)


async def _serve_batched(handler: Handler, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
    sock = listener.socket
    # A duplicate of the listening descriptor, for non-blocking accepts without trio's checkpoint.
    raw = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    raw.setblocking(False)
    try:
        while True:
            await trio.lowlevel.wait_readable(raw)
            for _ in range(BATCH):
                try:
                    conn, _ = raw.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in IGNORED_ERRNOS:
                        continue
                    if exc.errno in CAPACITY_ERRNOS:
                        log.warning("accept.at_capacity", error=errno.errorcode.get(exc.errno or 0, "?"))
                        await trio.sleep(CAPACITY_SLEEP_S)
                        break
                    raise
                nursery.start_soon(handler, trio.SocketStream(trio.socket.from_stdlib_socket(conn)))
            await trio.lowlevel.checkpoint()
    finally:
        raw.close()


async def _serve_one_at_a_time(
    handler: Handler, listener: trio.abc.Listener[Any], nursery: trio.Nursery
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in CAPACITY_ERRNOS:
                raise
            log.warning("accept.at_capacity", error=errno.errorcode.get(exc.errno or 0, "?"))
            await trio.sleep(CAPACITY_SLEEP_S)
            continue
        nursery.start_soon(handler, stream)

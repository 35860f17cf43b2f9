"""Keep-alive HTTP/1.1 connections from the router to frontends, one pool per frontend.

Forwarded Comet and other HTTP requests borrow a connection, send one request, stream the
response back, and return the connection if both sides of the exchange ended cleanly
(``h11.DONE``). Idle connections are capped per frontend (``pool_max_idle``) and closed after
``pool_idle_timeout_s``; connections in use are not capped, since every parked long-poll holds one.
A pool is keyed by (node id, address), so a frontend that restarts on a new port gets a new pool
and the old one is swept.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import h11
import structlog
import trio

from router.config import parse_hostport
from router.metrics import RouterMetrics

log = structlog.get_logger("continuity.router")

MAX_RESPONSE_HEAD_BYTES = 64 * 1024
PoolKey = tuple[str, str]  # (node id, "host:port")


class TargetRefused(Exception):
    """The frontend refused the TCP connection or did not accept it within the connect timeout."""


@dataclass(eq=False, slots=True)
class Upstream:
    """One keep-alive connection to a frontend, with its h11 client state."""

    stream: trio.SocketStream
    conn: h11.Connection
    idle_since: float
    reused: bool = False  # it served an earlier request: it may have been closed by the frontend meanwhile

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def open_upstream(address: str, timeout_s: float) -> trio.SocketStream:
    """Open a TCP stream to ``address`` (``host:port``); raise TargetRefused on refusal or timeout."""
    try:
        host, port = parse_hostport(address, name="address", allow_zero=False)
    except ValueError as exc:
        raise TargetRefused(str(exc)) from None
    try:
        with trio.fail_after(timeout_s):
            return await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise TargetRefused(f"{address}: {exc!r}") from None


class FrontendPool:
    """Idle keep-alive connections to one frontend address."""

    def __init__(self, address: str, *, max_idle: int, idle_timeout_s: float, connect_timeout_s: float,
                 metrics: RouterMetrics) -> None:
        self.address = address
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout_s
        self._connect_timeout = connect_timeout_s
        self._metrics = metrics
        self._idle: list[Upstream] = []
        self._closed = False  # dropped from Pools: connections released later are closed, not kept

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(self, *, fresh: bool = False) -> Upstream:
        """A connection ready for a request: the most recently idle one, or a new one if ``fresh``
        or none is left. Raise TargetRefused if a new one cannot be opened."""
        now = trio.current_time()
        while self._idle and not fresh:
            up = self._idle.pop()
            self._metrics.pool_idle.dec()
            if now - up.idle_since < self._idle_timeout:
                up.reused = True
                self._metrics.pool_reused.inc()
                return up
            await up.aclose()
        stream = await open_upstream(self.address, self._connect_timeout)
        self._metrics.pool_opened.inc()
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_BYTES)
        return Upstream(stream=stream, conn=conn, idle_since=now)

    async def release(self, up: Upstream) -> None:
        """Return ``up`` after a finished exchange; close it instead if it cannot be reused."""
        if (not self._closed and up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE
                and len(self._idle) < self._max_idle):
            up.conn.start_next_cycle()
            up.idle_since = trio.current_time()
            self._idle.append(up)
            self._metrics.pool_idle.inc()
            return
        await up.aclose()

    async def sweep(self, now: float) -> None:
        """Close idle connections older than the idle timeout."""
        keep: list[Upstream] = []
        for up in self._idle:
            if now - up.idle_since < self._idle_timeout:
                keep.append(up)
            else:
                self._metrics.pool_idle.dec()
                await up.aclose()
        self._idle = keep

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for up in idle:
            self._metrics.pool_idle.dec()
            await up.aclose()


class Pools:
    """One FrontendPool per (node id, address)."""

    def __init__(self, *, max_idle: int, idle_timeout_s: float, connect_timeout_s: float,
                 metrics: RouterMetrics) -> None:
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout_s
        self._connect_timeout = connect_timeout_s
        self._metrics = metrics
        self._pools: dict[PoolKey, FrontendPool] = {}

    def get(self, node_id: str, address: str) -> FrontendPool:
        key = (node_id, address)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = FrontendPool(
                address, max_idle=self._max_idle, idle_timeout_s=self._idle_timeout,
                connect_timeout_s=self._connect_timeout, metrics=self._metrics,
            )
        return pool

    def stats(self) -> dict[str, int]:
        """``{"node@address": idle connections}``, for /cluster-like introspection."""
        return {f"{n}@{a}": p.idle_count for (n, a), p in self._pools.items()}

    async def sweep(self, now: float, live: Collection[PoolKey]) -> None:
        """Close expired idle connections, and whole pools of nodes no longer alive at that address."""
        for key in list(self._pools):
            pool = self._pools[key]
            if key not in live:
                del self._pools[key]
                await pool.close()
                log.debug("pool.dropped", target=key[0], address=key[1])
            else:
                await pool.sweep(now)

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()

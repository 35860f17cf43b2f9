"""Outflow: the WebSocket write path of one frontend process, and flow control on its publishers.

Theory of operation
-------------------
Writes. A WebSocket transport keeps the bytes it owes its client in an ordered queue. Waking the
transport's own writer task for every frame costs one task switch, one cancel scope and one
syscall per delivery, which is most of a paced fan-out's CPU. So a transport whose writer task is
idle does not wake it: it asks the Outflow to flush it. The Outflow's one task wakes once per burst
(everything a publish, or a chunk of publishes read from one socket, queued) and writes each
transport's whole queue with one non-blocking ``send`` on its socket. Only what the kernel does not
take (the socket buffer is full) stays at the head of the queue, and the transport's writer task
takes over: it waits until the socket is writable and sends the rest with ``send_all``.

Order is exact: bytes leave a transport only from the head of its queue, and the Outflow never
writes while the writer task holds a batch (``WebSocketTransport.writing``). A stream that is not a
plain socket (TLS, a test's wrapper) never takes the direct path; its writer task does everything.
The writer task still sends the idle HEARTBEAT (RTN23, counted from the last write of either path)
and the close handshake, and a transport that is closing is never written directly.

Read receipts. A kernel takes bytes long before the client reads them: on a loopback client that
parses slower than we write, tens of MB sat in the clients' receive buffers (``ss``), seconds of
latency that no server-side queue shows. So every ``consumer_window_bytes // 8`` bytes a
transport queues a WebSocket Ping whose payload is the byte offset before it; the client's Pong
(RFC 6455 requires one) says it has read everything up to that offset (``confirmed``). A client
that has answered at least one probe (``ponging``) is written directly only while fewer than its
window of bytes are written and unconfirmed; beyond that its frames wait in its queue, where they
count towards the backlog below and towards its outbox limit. A Pong schedules the next flush.

The window is a share of one budget for the process (``consumer_budget_bytes`` over the WebSocket
transports, ``window``), between a quarter of ``consumer_window_bytes`` and all of it: with a fixed
window per client, what may sit unread grew with the number of clients, and with it the delay at
max rate (p99 0.7 s at 1,000 subscribers). Probes go at the tail of the queue with the data, so
every written stretch of an eighth of ``consumer_window_bytes`` ends with a probe; as that is less
than the smallest window, the window always reopens once the client reads. A client
that never answers pings is written as fast as its socket takes (no read receipts, no hold), and
so is a publisher while it is paused (its Pongs are not being read).

Publisher flow control. ``backlog`` is the number of bytes queued and not yet handed to the kernel,
over every WebSocket transport of the process. When it reaches ``high`` bytes the publishers are
paused: a connection that published stops being read after the chunk it is in (TCP pushes back on
the publishing client) until the backlog is down to ``low`` bytes. ACKs are unchanged (after
numbering, replication and queueing the fan-out); what changes is that a publisher cannot run ahead
of its subscribers, so publish->deliver latency stays bounded instead of growing with the
queues. Nothing is dropped, reordered or ACKed early: a paused publisher's frames wait in its own
socket. Only reads of publishing connections pause; subscribers, Comet and the peer links (fan-out
of publishes numbered on other frontends) are never paused.

Slow consumers. A transport whose queue reaches ``outbox_limit`` frames is still cut by the node
with a resumable DISCONNECTED (error 80020, slow consumer). Pausing publishers could keep a stuck
subscriber's queue from ever reaching that limit while it holds everyone up, so a second rule,
with the same resumable cut: when the publishers have stayed paused for ``stall_s`` seconds, the
*stuck* transport holding the most unsent bytes is cut, and with it every stuck transport that has
not written a byte during that pause; the rule applies again every ``stall_s`` while the pause
lasts. One stuck subscriber thus holds publishers up for at most about twice ``stall_s``, and loses
nothing: it resumes from the channel log.

Stuck means the bytes wait on the client: the kernel refused part of a direct write (the client's
receive window is full), its read receipts lag by more than the window, or its writer task has
been in one write since the pause (or the previous check) began. A process that is itself behind
(CPU-bound: 20,000 connections at one publish per channel per second, bench/many_channels.py) has
every transport holding a few frames queued for a pass it has not run yet, none written "during
the pause"; cutting them (2,413 at once in one run) cut healthy clients. Those are not stuck and
are never cut; the pause itself bounds the backlog. And when this task runs the rule more than
``stall_s / 2`` after it was due, the event loop is behind: only the largest stuck transport is
cut, not every stuck one that could not write meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog
import trio

log = structlog.get_logger("continuity.frontend")


class Flushable(Protocol):
    """What the Outflow needs from a transport (``frontend.websocket.WebSocketTransport``)."""

    @property
    def unsent(self) -> int:
        """Bytes queued and not yet handed to the kernel."""
        ...

    def stuck(self, since: float) -> bool:
        """Its unsent bytes wait on the client (refused by the kernel, unread past the window, or
        in one write since ``since``), not on this process."""
        ...

    def heartbeat_if_idle(self, now: float) -> None:
        """Queue the idle HEARTBEAT if nothing was written for the transport's idle interval."""
        ...

    @property
    def last_write(self) -> float:
        """trio time of the last write that made progress."""
        ...

    def flush(self, now: float) -> None:
        """Write the queue with one non-blocking send; hand any remainder to the writer task."""
        ...

    def cut_slow(self) -> None:
        """Cut the transport as a slow consumer (resumable DISCONNECTED, error 80020)."""
        ...


class Outflow:
    """Shared by every WebSocket transport of one process; run ``run`` in the server's nursery."""

    def __init__(
        self,
        *,
        high: int,
        low: int,
        stall_s: float,
        on_stall: Callable[[int], None] | None = None,
        budget: int = 0,
    ) -> None:
        if not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low} high={high}")
        self.budget = budget  # bytes written and unread over every client (0: no shared budget)
        self.high = high
        self.low = low
        self.stall_s = stall_s
        self.backlog = 0
        self.paused = False
        self.pauses = 0
        self.stalls_without_stuck = 0  # stall checks that found no stuck transport (nothing cut)
        self._resumed = trio.Event()
        self._resumed.set()
        self._paused_at = 0.0
        self._stall_at = 0.0
        self._pending: list[Flushable] = []
        self._wake = trio.Event()
        self.transports: set[Flushable] = set()
        self._on_stall = on_stall or (lambda n: None)
        # The idle HEARTBEAT of every transport (RTN23): one scan every ``_scan_s`` (a quarter of
        # the shortest idle interval a transport runs with, at most 1 s) instead of a deadline per
        # writer task. A HEARTBEAT is thus at most ``_scan_s`` late.
        self._scan_s = 0.0
        self._scan_at = float("inf")

    # -- called synchronously by transports --------------------------------
    def watch_idle(self, idle_s: float) -> None:
        """A transport's writer runs with ``idle_s``: scan often enough for it."""
        scan_s = min(1.0, idle_s / 4)
        if not self._scan_s or scan_s < self._scan_s:
            self._scan_s = scan_s
            self._scan_at = min(self._scan_at, trio.current_time() + scan_s)
            self._wake.set()  # the task re-arms with the scan deadline

    def window(self, cap: int) -> int:
        """A client's window: its share of the budget, between ``cap // 4`` and ``cap``."""
        if not self.budget:
            return cap
        return max(cap // 4, min(cap, self.budget // max(1, len(self.transports))))

    def schedule(self, t: Flushable) -> None:
        """Flush ``t`` in the next pass (the caller makes sure it is listed once)."""
        self._pending.append(t)
        self._wake.set()

    def queued(self, n: int) -> None:
        """``n`` more bytes are owed to some client."""
        self.backlog += n
        if not self.paused and self.backlog >= self.high:
            self.paused = True
            self.pauses += 1
            self._resumed = trio.Event()
            self._paused_at = trio.current_time()
            self._stall_at = self._paused_at + self.stall_s
            self._wake.set()  # the task re-arms with the stall deadline

    def drained(self, n: int) -> None:
        """``n`` owed bytes reached the kernel, or were dropped with their transport."""
        self.backlog -= n
        if self.paused and self.backlog <= self.low:
            self.paused = False
            self._resumed.set()

    async def wait_resumed(self) -> None:
        """Return once publishers may be read again (at once when not paused)."""
        if self.paused:
            await self._resumed.wait()

    # -- the task -----------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_at(min(self._stall_at, self._scan_at) if self.paused else self._scan_at):
                await self._wake.wait()
            # Anything scheduled from here on sets the new event; what was scheduled before is taken now.
            self._wake = trio.Event()
            pending, self._pending = self._pending, []
            if pending:
                now = trio.current_time()
                for t in pending:
                    t.flush(now)
            if self.paused and trio.current_time() >= self._stall_at:
                self._cut_stalled()
            if (now := trio.current_time()) >= self._scan_at:
                self._scan_at = now + self._scan_s
                for t in list(self.transports):
                    t.heartbeat_if_idle(now)

    def _cut_stalled(self) -> None:
        since = self._paused_at
        holders = [t for t in self.transports if t.unsent > 0 and t.stuck(since)]
        now = trio.current_time()
        late_s = now - self._stall_at
        self._paused_at = now
        self._stall_at = now + self.stall_s
        if not holders:
            self.stalls_without_stuck += 1
            log.info("outflow.stalled_none_stuck", backlog=self.backlog, late_s=round(late_s, 3))
            return
        largest = max(holders, key=lambda t: t.unsent)
        if late_s > self.stall_s / 2:
            victims = [largest]  # this loop is behind: "did not write meanwhile" says nothing
        else:
            victims = [t for t in holders if t is largest or t.last_write < since]
        log.info(
            "outflow.stalled",
            backlog=self.backlog,
            cut=len(victims),
            stuck=len(holders),
            largest_unsent=largest.unsent,
            paused_s=round(now - since, 3),
            late_s=round(late_s, 3),
        )
        self._on_stall(len(victims))
        for t in victims:
            t.cut_slow()

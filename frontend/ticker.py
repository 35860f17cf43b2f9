"""The node's timer driver: tick at the core's next deadline, and not before, unless an input came.

Theory of operation
-------------------
The cores keep their timers (session expiry, presence lingers, retries of peer operations, quorum
grants, the once-a-second sweep) and answer ``next_deadline()``, in wall-clock milliseconds, after
every input. ``Ticker.run`` sleeps until that deadline and then calls ``tick(now)``, as
``gossip/member.py``'s timer loop does. An input (a client frame, a peer message or reply, a new map,
a REST request, a store result) may move the deadline earlier, so the driver that fed it calls
``poke()`` (``FrontendNode.wake``): the ticker wakes, re-reads the deadline and sleeps again, ticking
only once the deadline is reached. Pokes coalesce: many inputs in one scheduling batch cost one wake,
and a stream of inputs costs one re-read per ``REREAD_MS`` at most (``next_deadline()`` looks at
every home), so a deadline an input moved earlier is met within ``REREAD_MS`` under load, at once
otherwise.
Without a deadline or an input the ticker does not run at all (``tests/unit/frontend/test_ticker.py``
shows it in virtual time); the sweep's one-second deadline bounds the delay of any input path that
forgot to poke.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from frontend.clock import wall_ms

REREAD_MS = 10  # under a stream of inputs (or a deadline left due) it is re-read at most this often

class Timed(Protocol):
    """A core with timers: ``FrontendNode``."""

    def tick(self, now_ms: int) -> None: ...

    def next_deadline(self) -> int: ...


class Ticker:
    def __init__(self, core: Timed, clock: Callable[[], int] = wall_ms) -> None:
        self._core = core
        self._clock = clock
        self._wakeup = trio.Event()
        self.ticks = 0  # calls of ``core.tick``
        self.wakes = 0  # times the ticker woke (a deadline or a poke)

    def poke(self) -> None:
        """An input was fed to the core: re-read its deadline (at the next scheduling point)."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            now = self._clock()
            floor = now
            if self._core.next_deadline() <= now:
                self._core.tick(now)
                self.ticks += 1
                floor = now + REREAD_MS  # a deadline the tick left in the past is not spun on
            due = max(self._core.next_deadline(), floor)
            read_at = self._clock()
            with trio.move_on_after(max(0, due - read_at) / 1000):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self.wakes += 1
            now = self._clock()
            if now < min(due, read_at + REREAD_MS):  # poked again soon after the last read
                await trio.sleep((min(due, read_at + REREAD_MS) - now) / 1000)

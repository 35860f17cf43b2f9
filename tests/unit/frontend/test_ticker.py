"""The node's timer driver (frontend/ticker.py) in virtual time: it sleeps until the core's next
deadline and wakes before it only for an input (a poke), never to poll.

``autojump_clock`` is trio's MockClock jumping to the next timer whenever every task is blocked, so
ten idle minutes take no time, and the clock the ticker reads is that virtual time in milliseconds.
"""

from __future__ import annotations

import random

import trio

from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.session import SessionState
from frontend.testing import MemoryOutlet
from frontend.ticker import REREAD_MS, Ticker

FAR = 10**12


def virtual_ms() -> int:
    return round(trio.current_time() * 1000)


class Timers:
    """A core with one settable deadline that records when it was ticked."""

    def __init__(self) -> None:
        self.deadline = FAR
        self.ticked_at: list[int] = []

    def tick(self, now_ms: int) -> None:
        self.ticked_at.append(now_ms)
        if self.deadline <= now_ms:
            self.deadline = FAR

    def next_deadline(self) -> int:
        return self.deadline


class Recorded:
    """A FrontendNode whose ticks are recorded."""

    def __init__(self, node: FrontendNode) -> None:
        self.node = node
        self.ticked_at: list[int] = []

    def tick(self, now_ms: int) -> None:
        self.ticked_at.append(now_ms)
        self.node.tick(now_ms)

    def next_deadline(self) -> int:
        return self.node.next_deadline()


async def test_without_a_deadline_or_an_input_the_ticker_never_wakes(autojump_clock: trio.abc.Clock) -> None:
    core = Timers()
    ticker = Ticker(core, clock=virtual_ms)
    with trio.fail_after(7_200):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await trio.sleep(600)  # ten idle minutes
            assert (ticker.wakes, core.ticked_at) == (0, [])
            # An input moves the deadline 200 ms on: the poke wakes the ticker once, it does not tick...
            core.deadline = virtual_ms() + 200
            ticker.poke()
            await trio.sleep(0.1)
            assert (ticker.wakes, core.ticked_at) == (1, [])
            # ... until that deadline, exactly.
            await trio.sleep(0.2)
            assert core.ticked_at == [600_200]
            # An input that leaves the deadline where it is costs a wake, not a tick.
            ticker.poke()
            await trio.sleep(60)
            assert (ticker.wakes, core.ticked_at) == (3, [600_200])
            nursery.cancel_scope.cancel()


async def test_a_stream_of_inputs_costs_one_reread_per_reread_ms(autojump_clock: trio.abc.Clock) -> None:
    core = Timers()
    ticker = Ticker(core, clock=virtual_ms)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await trio.sleep(1)
            for _ in range(100):  # an input every millisecond for 100 ms
                ticker.poke()
                await trio.sleep(0.001)
            # The last of them sets a deadline 1 ms on: met at most REREAD_MS late.
            core.deadline = virtual_ms() + 1
            ticker.poke()
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert 10 <= ticker.wakes <= 12
    assert len(core.ticked_at) == 1 and 1_101 <= core.ticked_at[0] <= 1_101 + REREAD_MS


async def test_a_deadline_a_tick_leaves_due_is_not_spun_on(autojump_clock: trio.abc.Clock) -> None:
    class Stuck(Timers):
        def tick(self, now_ms: int) -> None:
            self.ticked_at.append(now_ms)  # never clears its deadline

    core = Stuck()
    core.deadline = 0
    ticker = Ticker(core, clock=virtual_ms)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await trio.sleep(0.095)
            nursery.cancel_scope.cancel()
    assert core.ticked_at == list(range(0, 100, REREAD_MS))  # 10 ticks in 95 ms, not thousands


async def test_an_idle_node_ticks_only_at_its_once_a_second_sweep(autojump_clock: trio.abc.Clock) -> None:
    core = Recorded(FrontendNode(FrontendConfig(dev=True), rng=random.Random(7)))
    ticker = Ticker(core, clock=virtual_ms)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await trio.sleep(10.5)
            nursery.cancel_scope.cancel()
    # The old loop ticked every 50 ms or less: 210 ticks in these 10.5 s.
    assert core.ticked_at == [i * 1000 for i in range(11)]
    assert ticker.wakes == 10


async def _expire_a_session(poke: bool) -> tuple[list[int], SessionState]:
    """Connect at 2.5 s, lose the transport at 2.6 s (TTL 300 ms: it expires at 2.9 s, before the
    sweep due at 3 s) and report when the node was ticked."""
    node = FrontendNode(FrontendConfig(dev=True, connection_state_ttl_ms=300), rng=random.Random(7))
    core = Recorded(node)
    ticker = Ticker(core, clock=virtual_ms)
    node.wake = ticker.poke
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            await trio.sleep(2.5)
            outlet = MemoryOutlet()
            session = node.connect(virtual_ms(), {"v": "6"}, outlet)
            assert session is not None
            await trio.sleep(0.1)
            node.transport_lost(virtual_ms(), session, outlet)
            if poke:
                node.wake()
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
    return core.ticked_at, session.state


async def test_an_input_that_sets_an_earlier_deadline_is_ticked_at_it(autojump_clock: trio.abc.Clock) -> None:
    ticked_at, state = await _expire_a_session(poke=True)
    assert ticked_at == [0, 1000, 2000, 2900, 3000]
    assert state is SessionState.EXPIRED


async def test_without_a_poke_an_earlier_deadline_waits_for_the_sweep(autojump_clock: trio.abc.Clock) -> None:
    """The contrast: the same input, not followed by a poke, is noticed only at the next deadline."""
    ticked_at, state = await _expire_a_session(poke=False)
    assert ticked_at == [0, 1000, 2000, 3000]
    assert state is SessionState.EXPIRED

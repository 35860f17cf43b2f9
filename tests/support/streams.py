"""Helpers for integration tests: fast reconnect settings, serial arithmetic, bounded polling."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import trio

from continuity import Backoff

# Reconnect quickly in tests (the production default caps at 5 s).
FAST_BACKOFF = Backoff(base=0.05, cap=0.5)
POLL_INTERVAL = 0.02


def parse_serial(serial: str | None) -> tuple[str, int]:
    """``"<epoch>:<seq>"`` → ``(epoch, seq)``."""
    assert serial is not None, "message without a serial"
    epoch, _, seq = serial.rpartition(":")
    return epoch, int(seq)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until true. Bound it with trio.fail_after in the caller."""
    while True:
        if predicate():
            return
        await trio.sleep(POLL_INTERVAL)


async def wait_until_async(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll an async ``predicate`` until true. Bound it with trio.fail_after in the caller."""
    while True:
        if await predicate():
            return
        await trio.sleep(POLL_INTERVAL)


def assert_contiguous(serials: list[str | None]) -> None:
    """Each serial is the previous plus one, in one epoch (DESIGN 7, invariant 2)."""
    parsed = [parse_serial(s) for s in serials]
    for (e0, s0), (e1, s1) in itertools.pairwise(parsed):
        assert e1 == e0 and s1 == s0 + 1, f"gap or duplicate: {e0}:{s0} then {e1}:{s1}"

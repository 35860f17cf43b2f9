"""Reconnect delays: full-jitter exponential backoff (AWS "Exponential Backoff And Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``delay(attempt)`` is uniform in ``[0, min(cap, base * 2**attempt)]``, in seconds."""

    # First ceiling, seconds.
    base: float = 0.1
    # Largest ceiling, seconds.
    cap: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before reconnect attempt ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2 ** min(attempt, 62))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A full-jitter delay before reconnect attempt ``attempt``."""
        return rng.uniform(0.0, self.ceiling(attempt))

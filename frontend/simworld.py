"""What the simulation's parts (clients, witness, drain) see of the ``World`` that runs them.

``frontend/sim.py``'s ``World`` owns the processes, the maps, the clock and the seeded generator;
``simclient``, ``simwitness`` and ``simdrain`` act on it through these Protocols instead of importing
``World`` (which imports them). ``SimWorld`` is what every part reads; each part's module extends it
with the little more it needs.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from frontend.node import FrontendNode
from frontend.simnet import Scheduler


class SimWorld(Protocol):
    """The virtual clock, the seeded generator, the live processes and how to give one an input."""

    @property
    def seed(self) -> int: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def sched(self) -> Scheduler: ...

    @property
    def client_latency_ms(self) -> tuple[int, int]: ...

    @property
    def counts(self) -> Counter[str]: ...

    @property
    def nodes(self) -> dict[str, FrontendNode]: ...

    @property
    def zone(self) -> dict[str, str]: ...

    def reachable(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` are on the same side of every partition."""
        ...

    def input(self, node_id: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` as an input of ``node_id`` at the current virtual time, then re-arm its timer."""
        ...

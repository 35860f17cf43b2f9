"""The simulation's judge: the chaos checker's verdicts (``bench/chaos/checker.py``).

Nothing ACKed lost, exactly once, serial order, no silent gap, no split brain, nothing NACKed or
failed delivered, one serial per payload, a subscriber's serial never moving backwards, and
publisher order (one connection's publishes on a channel delivered in the order it sent them: the
simulated client numbers its publish ids in send order). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.chaos.checker import VIOLATION_KINDS, check

KINDS = VIOLATION_KINDS


def check_run(publishes: Sequence[Mapping[str, Any]], logs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    verdict = check(publishes, logs)
    violations = {k: v for k, v in verdict.counts.items() if v}
    return {"violations": violations, "examples": verdict.examples[:10]}

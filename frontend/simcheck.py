"""The simulation's judge: the chaos checker's verdicts (``bench/chaos/checker.py``).

Nothing ACKed lost, exactly once, serial order, no silent gap, no split brain, nothing NACKed or
failed delivered, one serial per payload, a subscriber's serial never moving backwards, and
publisher order (one connection's publishes on a channel delivered in the order it sent them: the
simulated client numbers its publish ids in send order; each connection is its own publisher).
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.chaos.checker import VIOLATION_KINDS, check

KINDS = VIOLATION_KINDS


def check_run(publishes: Sequence[Mapping[str, Any]], logs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    verdict = check([_per_connection(p) for p in publishes], logs)
    violations = {k: v for k, v in verdict.counts.items() if v}
    return {"violations": violations, "examples": verdict.examples[:10]}


def _per_connection(p: Mapping[str, Any]) -> Mapping[str, Any]:
    """Publisher order is a promise per connection (Ably's, and issue 10's definition): the checker
    orders a publisher's stream by (client, channel), so each connection of a client is made its own
    publisher (``client@connectionId``), ordered by the number in its pid. A client that got a new
    connectionId gave its un-ACKed publishes up; if the old connection's frontend numbers them later,
    they are ordered only against that connection's other publishes (seed 1257)."""
    head, _, tail = str(p["pid"]).rpartition(":")
    if not tail.isdigit() or not head or not p.get("conn"):
        return p
    return {**p, "client": f"{p['client']}@{p['conn']}", "seq": int(tail)}

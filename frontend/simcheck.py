"""The simulation's judge: the chaos checker's verdicts plus publisher order.

``check_run`` applies ``bench/chaos/checker.check`` (nothing ACKed lost, exactly once, serial order,
no silent gap, no split brain, nothing NACKed or failed delivered, one serial per payload) and
``publisher_order``: each subscriber receives one connection's publishes on a channel in the order
they were published. A publish id is ``"<client>:<n>"`` with ``n`` counting that client's publishes,
and a client's publishes on one connection are numbered in order, so within one connectionId of the
publisher the ``n`` a subscriber sees must rise. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.chaos.checker import VIOLATION_KINDS, check

KINDS = (*VIOLATION_KINDS, "publisher_order")


def publisher_order(
    publishes: Sequence[Mapping[str, Any]], logs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Deliveries of a connection's publishes out of the order it published them."""
    conn_of = {p["pid"]: p.get("conn") for p in publishes}
    out = []
    for log in logs:
        last: dict[tuple[str, Any], tuple[int, str]] = {}
        for e in log["entries"]:
            if e["k"] != "msg" or not e.get("pid"):
                continue
            client, _, n = e["pid"].rpartition(":")
            key = (client, conn_of.get(e["pid"]))
            prev = last.get(key)
            if prev is not None and int(n) < prev[0]:
                out.append({"kind": "publisher_order", "subscriber": log["client"], "channel": log["channel"],
                            "pid": e["pid"], "after": prev[1], "serial": e["serial"]})  # fmt: skip
            if prev is None or int(n) > prev[0]:
                last[key] = (int(n), e["pid"])
    return out


def check_run(publishes: Sequence[Mapping[str, Any]], logs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    verdict = check(publishes, logs)
    order = publisher_order(publishes, logs)
    violations = {k: v for k, v in verdict.counts.items() if v}
    if order:
        violations["publisher_order"] = len(order)
    return {"violations": violations, "examples": (verdict.examples + order)[:10]}

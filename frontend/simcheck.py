"""The simulation's judge: the chaos checker's verdicts (``bench/chaos/checker.py``).

Nothing ACKed lost, exactly once, serial order, no silent gap, no split brain, nothing NACKed or
failed delivered, one serial per payload, a subscriber's serial never moving backwards, and
publisher order (one connection's publishes on a channel delivered in the order it sent them: the
simulated client numbers its publish ids in send order; each connection is its own publisher).
Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bench.chaos.checker import VIOLATION_KINDS, check

KINDS = VIOLATION_KINDS


def check_run(
    publishes: Sequence[Mapping[str, Any]],
    logs: Sequence[Mapping[str, Any]],
    destroyed: Callable[[str, str], bool] | None = None,
    ttl_s: float | None = None,
) -> dict[str, Any]:
    verdict = check([_per_connection(p) for p in publishes], logs, destroyed=destroyed, ttl_s=ttl_s)
    violations = {k: v for k, v in verdict.counts.items() if v}
    return {"violations": violations, "examples": verdict.examples[:10], "beyond_model": verdict.beyond_model}


AVAILABILITY_MS = 10_000  # every channel ACKs again within this long of a zone's loss (issue 11)


def zone_loss_availability(
    publishes: Sequence[Mapping[str, Any]],
    schedule: Sequence[Any],
    channels: int,
    heal_at_ms: int,
) -> list[dict[str, Any]]:
    """A zone lost alone (no fault but client cuts and link resets before it is judged) leaves the
    other zone with the witness, which holds the majority of zones: every channel published to
    after the loss must ACK a publish sent after it within ``AVAILABILITY_MS``. One example per
    channel that did not."""
    out: list[dict[str, Any]] = []
    for fault in schedule:
        if fault.kind != "zone_loss":
            continue
        start, end = fault.at_ms, fault.at_ms + AVAILABILITY_MS
        others = [f for f in schedule if f is not fault and f.kind not in ("tunnel_cut", "link_reset")]
        if end > heal_at_ms or any(f.at_ms <= end for f in others):
            continue
        for i in range(channels):
            name = f"ch{i}"
            sent = [p for p in publishes if p["channel"] == name and start <= p["sent_t"] * 1000 < end]
            if not sent:
                continue
            acks = [p["t"] * 1000 for p in sent if p["outcome"] == "ack"]
            first = min(acks, default=None)
            if first is None or first > end:
                nacks = sorted({p["code"] for p in sent if p["outcome"] == "nack"})
                out.append({"kind": "zone_loss_unavailable", "channel": name, "zone": fault.target,
                            "lost_at_ms": start, "first_ack_ms": first, "nacks": nacks})  # fmt: skip
    return out


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


def summarize(results: Sequence[Mapping[str, Any]], elapsed: float, procs: int) -> dict[str, Any]:
    """The figures ``make sim`` prints for the runs ``results`` (each ``World.run``'s, with its
    ``cpu_s``), which took ``elapsed`` seconds of wall time over ``procs`` processes."""
    faults: Counter[str] = Counter()
    violations: Counter[str] = Counter()
    beyond: Counter[str] = Counter()
    for r in results:
        faults.update(r["faults"])
        violations.update(r["violations"])
        beyond.update(r["beyond_model"])
    failing = sorted((r for r in results if not r["ok"]), key=lambda r: r["seed"])
    return {
        "seeds": len(results),
        "faults_by_kind": dict(sorted(faults.items())),
        "publishes": sum(r["publishes"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "events": sum(r["events"] for r in results),
        "violations_by_kind": dict(sorted(violations.items())),
        "failing_seeds": [r["seed"] for r in failing],
        # a double fault destroyed every copy of an entry (simloss.py): announced, judged apart
        "beyond_model_by_kind": dict(sorted(beyond.items())),
        "beyond_model_seeds": [r["seed"] for r in results if r["beyond_model"]],
        "first_failure": failing[0] if failing else None,
        "seconds": round(elapsed, 1),
        "seeds_per_s": round(len(results) / elapsed, 1) if elapsed else None,
        # CPU time of the runs themselves (all processes): the figure to trust on a busy machine.
        "cpu_seconds": round(sum(r["cpu_s"] for r in results), 1),
        "procs": procs,
        "ok": not failing,
    }

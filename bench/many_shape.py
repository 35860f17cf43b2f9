"""The pure parts of bench/many_channels.py: which shape fits the open-file limit, how the channels
are split over load-client processes, and the merge of the processes' results. No I/O, no timing,
so that tests/unit/bench checks them."""

from __future__ import annotations

from typing import Any

# Descriptors a server process needs besides its client sockets (an idle frontend holds 9, the
# Socket.IO peer 19: the listening socket, epoll, pipes, logs).
FD_MARGIN = 100


def fit_channels(requested: int, members: int, fd_limit: int | None, margin: int = FD_MARGIN) -> int:
    """The largest channel count <= ``requested`` whose ``members`` connections per channel one
    server process can hold under ``fd_limit`` open files (None: no limit)."""
    if requested < 1 or members < 1:
        raise ValueError("channels and members must be >= 1")
    if fd_limit is None:
        return requested
    return max(0, min(requested, (fd_limit - margin) // members))


def plan(channels: int, procs: int) -> list[tuple[int, int]]:
    """``channels`` split into at most ``procs`` contiguous (first, count) ranges, sizes within one."""
    procs = max(1, min(procs, channels))
    out, first = [], 0
    for i in range(procs):
        count = channels // procs + (1 if i < channels % procs else 0)
        out.append((first, count))
        first += count
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The load processes' ``result`` events as one: sums, the span from the first publish to the
    last delivery, deliveries/s over it, and every latency sample (unsorted)."""
    received = sum(r["received"] for r in results)
    starts = [r["publish_start_ms"] for r in results if r.get("publish_start_ms")]
    lasts = [r["last_recv_ms"] for r in results if r.get("last_recv_ms")]
    span_s = (max(lasts) - min(starts)) / 1000 if starts and lasts else None
    out: dict[str, Any] = {
        k: sum(r[k] for r in results)
        for k in ("connections", "published", "acked", "nacked", "cut", "gaps", "dupes", "complete")
    }
    out["deliveries"] = received
    out["span_s"] = None if span_s is None else round(span_s, 3)
    out["deliveries_per_s"] = round(received / span_s, 1) if span_s and span_s > 0 else None
    out["latencies"] = [x for r in results for x in r["latencies"]]
    return out


def per_delivery_us(cpu_s: float, deliveries: int) -> float | None:
    """Server CPU per delivery in microseconds (None without deliveries)."""
    return round(cpu_s * 1e6 / deliveries, 2) if deliveries else None

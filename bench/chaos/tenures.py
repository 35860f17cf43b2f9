"""Channel home tenures from the frontends' logs, and the two checks they allow. Pure.

A frontend logs when it becomes a channel's home (``channel.home_acquired``, with the epoch and the
last seq of the log it starts from, and where that log came from) and when it stops being one
(``channel.handed_over``, ``channel.home_stale``, ``channel.retired``, or every home at once on
``channel.homes_revalidated``); a process that dies stops being home of everything. ``run.py``
turns those lines, and the driver's record of which processes were down and which nodes were cut
off from which, into :class:`ClusterRecord`; times are seconds on the run's clock.

* ``two_homes``: two nodes hold the home of one channel at the same time although they can reach
  each other. A partition excuses it while it lasts and for ``HEAL_GRACE_S`` after it heals (the
  side that could not reach a replica is blocked, never ACKs, and demotes its homes once gossip
  sees the other side again); nothing else does: not a false death, not a drain, not a restart.
* ``stale_home``: a home taken from a log that ends before a serial of its epoch that a client had
  already been ACKed (numbered and replicated, so a fuller copy existed), or a new epoch started
  while the channel's ACKed history is still within its retention (``retention_s``): either way
  an ACKed message is missing from the new home's history. Not while the node is on the cut-off
  side of a partition (or within ``HEAL_GRACE_S`` of its heal): there it can reach no replica in
  another zone, so it numbers nothing durable, and it steps down when the partition heals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HEAL_GRACE_S = 10.0  # after a heal, gossip must see the other side again before homes are re-validated
ENDS_ONE = ("channel.handed_over", "channel.home_stale", "channel.retired")
ENDS_ALL = ("channel.homes_revalidated",)
ACQUIRED = "channel.home_acquired"
EVENTS = (ACQUIRED, *ENDS_ONE, *ENDS_ALL)


@dataclass(frozen=True, slots=True)
class Tenure:
    node: str
    channel: str
    start: float
    end: float  # inf: still home at the end of the run
    epoch: str
    last_seq: int
    source: str


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """What the checks need: home events, process down-times and partitions (run-clock seconds).

    ``events``: ``{"t", "node", "event", "channel", "epoch", "last_seq", "source"}`` (the log line's
    fields; ``channel`` absent for ``channel.homes_revalidated``). ``down``: ``{"node", "from",
    "to"}`` (``to`` None: down at the end). ``separations``: ``{"from", "to", "side"}``: the nodes in
    ``side`` could not reach the others from ``from`` until ``to`` (None: the end).
    """

    events: Sequence[Mapping[str, Any]]
    down: Sequence[Mapping[str, Any]] = ()
    separations: Sequence[Mapping[str, Any]] = ()
    retention_s: float | None = None
    # connectionId -> the times a frontend lost its transport (``connection.detached``), for the
    # presence check: the server's linger runs from there, however late the client notices.
    detached: Mapping[str, Sequence[float]] = field(default_factory=dict)
    end: float = float("inf")


@dataclass
class _Open:
    by_key: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = field(default_factory=dict)


def tenures(record: ClusterRecord) -> list[Tenure]:
    """Every home tenure, closed by the node's own release, its death, or the end of the run."""
    timeline: list[tuple[float, int, Mapping[str, Any]]] = []
    for e in record.events:
        if e.get("event") in EVENTS:
            timeline.append((float(e["t"]), 1, e))
    for d in record.down:
        timeline.append((float(d["from"]), 0, {"event": "down", "node": d["node"]}))
    timeline.sort(key=lambda x: (x[0], x[1]))
    held = _Open()
    out: list[Tenure] = []

    def close(key: tuple[str, str], t: float) -> None:
        start, e = held.by_key.pop(key)
        out.append(
            Tenure(
                node=key[0],
                channel=key[1],
                start=start,
                end=t,
                epoch=str(e.get("epoch", "")),
                last_seq=int(e.get("last_seq", 0)),
                source=str(e.get("source", "")),
            )
        )

    for t, _, e in timeline:
        node, kind = str(e["node"]), e["event"]
        if kind == ACQUIRED:
            key = (node, str(e["channel"]))
            if key in held.by_key:
                close(key, t)
            held.by_key[key] = (t, e)
        elif kind in ENDS_ONE:
            key = (node, str(e["channel"]))
            if key in held.by_key:
                close(key, t)
        else:  # ENDS_ALL or the process went down
            for key in [k for k in held.by_key if k[0] == node]:
                close(key, t)
    for key in list(held.by_key):
        close(key, record.end)
    return sorted(out, key=lambda x: (x.channel, x.start, x.node))


def _excused(
    a: str, b: str, separations: Iterable[Mapping[str, Any]], end: float
) -> list[tuple[float, float]]:
    out = []
    for s in separations:
        side = set(s["side"])
        if (a in side) != (b in side):
            to = float(s["to"]) if s.get("to") is not None else end
            out.append((float(s["from"]), to + HEAL_GRACE_S))
    return out


def _uncovered(lo: float, hi: float, covers: list[tuple[float, float]]) -> float:
    """Length of [lo, hi) not inside any of ``covers``."""
    left = hi - lo
    cursor = lo
    for c_lo, c_hi in sorted(covers):
        if c_hi <= cursor or c_lo >= hi:
            continue
        left -= min(hi, c_hi) - max(cursor, c_lo)
        cursor = max(cursor, min(hi, c_hi))
    return max(0.0, left)


def _cut_off(node: str, t: float, record: ClusterRecord) -> bool:
    """``node`` is on the cut-off side of a partition at ``t`` (or within the grace after its heal)."""
    for s in record.separations:
        to = float(s["to"]) if s.get("to") is not None else record.end
        if node in s["side"] and float(s["from"]) <= t <= to + HEAL_GRACE_S:
            return True
    return False


def two_homes(record: ClusterRecord) -> list[dict[str, Any]]:
    """Pairs of tenures of one channel by two nodes that overlap outside every excusing partition."""
    by_channel: dict[str, list[Tenure]] = defaultdict(list)
    for ten in tenures(record):
        by_channel[ten.channel].append(ten)
    found = []
    for channel, ts in by_channel.items():
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                if b.start >= a.end:
                    break  # sorted by start: no later tenure overlaps a
                if a.node == b.node:
                    continue
                lo, hi = max(a.start, b.start), min(a.end, b.end)
                if hi <= lo:
                    continue
                left = _uncovered(lo, hi, _excused(a.node, b.node, record.separations, record.end))
                if left > 0:
                    found.append(
                        {
                            "channel": channel,
                            "t": round(lo, 3),
                            "nodes": [a.node, b.node],
                            "overlap_s": round(left, 3),
                            "homes": [
                                {
                                    "node": x.node,
                                    "start": x.start,
                                    "epoch": x.epoch,
                                    "last_seq": x.last_seq,
                                    "source": x.source,
                                }
                                for x in (a, b)
                            ],
                        }
                    )
    return found


def stale_homes(record: ClusterRecord, acks: Iterable[tuple[str, float, str, int]]) -> list[dict[str, Any]]:
    """Tenures that started from less than had been ACKed: ``acks`` are (channel, t, epoch, seq)."""
    by_channel: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    for channel, t, epoch, seq in acks:
        by_channel[channel].append((t, epoch, seq))
    found = []
    for ten in tenures(record):
        if _cut_off(ten.node, ten.start, record):
            continue
        before = [(t, e, s) for t, e, s in by_channel.get(ten.channel, ()) if t < ten.start]
        same = [s for _, e, s in before if e == ten.epoch]
        if same and max(same) > ten.last_seq:
            found.append(
                {
                    "channel": ten.channel,
                    "t": round(ten.start, 3),
                    "node": ten.node,
                    "epoch": ten.epoch,
                    "last_seq": ten.last_seq,
                    "acked": max(same),
                    "source": ten.source,
                }
            )
        elif not same and record.retention_s is not None:
            recent = [(t, e, s) for t, e, s in before if t >= ten.start - record.retention_s]
            if recent:
                t, e, s = max(recent)
                found.append(
                    {
                        "channel": ten.channel,
                        "t": round(ten.start, 3),
                        "node": ten.node,
                        "epoch": ten.epoch,
                        "last_seq": ten.last_seq,
                        "acked": f"{e}:{s}",
                        "acked_t": t,
                        "source": ten.source,
                    }
                )
    return found

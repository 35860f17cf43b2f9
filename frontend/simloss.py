"""Which numbered entries the simulated faults destroyed: every copy of them gone at once.

Theory of operation
-------------------
A channel's log lives on its home and on one copy in the other zone (and, while a zone is
lost, on zone-mates' copies). Two copies survive the loss of either one; nothing survives
the loss of both before the cluster has noticed the first loss and copied the log again
(a detection delay first, then the copy). A schedule can do that: zone b is lost and,
125 ms later, the zone-a copy's process is killed (seed 9112); or the copy's process is
restarted and, 1.35 s later, before any map shows it gone, the home's is killed (seed 7973).
The next home then continues from an older copy, or has none and starts a new epoch: an
ACKed entry whose every copy died is never delivered, the next home may number other
messages at its serial, and a publisher's retry of a message whose first numbering died is
numbered again. No design with two copies can avoid it; that is a double fault beyond the
replication model, not a bug. A single stop is not: whatever the dying process alone held
(a home's tail not yet copied, say) the design must not have ACKed, so it stays judged.

``CopyLedger`` tells the judge which serials a double fault destroyed. Before the simulation
stops a process (kill, restart, a zone's loss, the end of a drain) it calls ``before_stop(nodes,
dying, now_ms)``, and the ledger remembers, per stop, the (epoch, last seq) of every channel log
the dying process held (as home or as copy). For each such log it takes ``kept``, the highest
seq of the same epoch any surviving process holds, and ``earlier``, the highest last seq of
the same (channel, epoch) in the log of another process stopped at most ``window_ms`` before
(the time the cluster needs to notice a loss and copy again; the simulation passes its
slowest detection delay plus a second). Destroyed is the range (kept, min(last seq, earlier)]:
entries two processes held, both stopped within one window, and no survivor holds. With no
such earlier stop, nothing is destroyed. Stops at one instant (a zone's loss) are taken in
turn: the first sees the others as survivors, the later ones see it as an earlier stop.

``destroyed(channel, serial)`` is then the predicate the checker takes
(``bench/chaos/checker.check(destroyed=...)``): a duplicate, a serial mismatch, a split brain
of two ACKed or delivered payloads, or a loss that involves a destroyed serial is counted as
beyond the model (reported apart, not a violation). Everything else is judged as before: an
unannounced jump is still a silent gap, an ACKed serial outside the ranges never delivered
still a loss. Pure bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from bench.chaos.checker import split_serial
from frontend.channel_log import ChannelLog


class _Holder(Protocol):
    """What the ledger reads of a ``FrontendNode``: its channel logs, home and copies."""

    @property
    def channels(self) -> _Channels: ...


class _Channels(Protocol):
    @property
    def homes(self) -> Mapping[str, _Home]: ...

    @property
    def replicas(self) -> Mapping[str, ChannelLog]: ...


class _Home(Protocol):
    @property
    def log(self) -> ChannelLog: ...


def _logs(node: _Holder) -> dict[str, ChannelLog]:
    held = dict(node.channels.replicas)
    held.update({name: home.log for name, home in node.channels.homes.items()})
    return held


@dataclass(frozen=True)
class _Stop:
    at_ms: int
    node_id: str
    held: dict[tuple[str, str], int]  # (channel, epoch) -> the last seq the process held


class CopyLedger:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms  # how long after a stop a second one still makes a double fault
        self.stops: list[_Stop] = []  # the stops of the last window, oldest first
        # (channel, epoch) -> the seq ranges (after, up_to] a double fault left no copy of
        self.ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def before_stop(self, nodes: Mapping[str, _Holder], dying: str, now_ms: int) -> None:
        """``dying`` (one of ``nodes``, the live processes) is about to stop, at ``now_ms``."""
        self.stops = [s for s in self.stops if now_ms - s.at_ms <= self.window_ms]
        survivors = [_logs(node) for node_id, node in sorted(nodes.items()) if node_id != dying]
        held = {(channel, log.epoch): log.last_seq for channel, log in sorted(_logs(nodes[dying]).items())}
        for (channel, epoch), last_seq in held.items():
            kept = max(
                (logs[channel].last_seq for logs in survivors
                 if channel in logs and logs[channel].epoch == epoch),
                default=0,
            )  # fmt: skip
            earlier = max(
                (s.held.get((channel, epoch), 0) for s in self.stops if s.node_id != dying),
                default=0,
            )
            up_to = min(last_seq, earlier)
            if kept < up_to:
                self.ranges.setdefault((channel, epoch), []).append((kept, up_to))
        self.stops.append(_Stop(now_ms, dying, held))

    def destroyed(self, channel: str, serial: str) -> bool:
        epoch, seq = split_serial(serial)
        return any(after < seq <= up_to for after, up_to in self.ranges.get((channel, epoch), ()))

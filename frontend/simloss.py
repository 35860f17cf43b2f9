"""Which numbered entries the simulated faults destroyed: every copy of them gone at once.

Theory of operation
-------------------
A channel's log lives on its home and on one copy in the other zone (and, while a zone is
lost, on zone-mates' copies). Two copies survive the loss of either one; nothing survives
the loss of both before the cluster has copied the log again (which takes a detection delay
first). A schedule can do that: zone b is lost and, 125 ms later, the zone-a copy's process
is killed (seed 9112). The next home then has no copy to continue from and starts a new
epoch, which every subscriber is told (an ATTACHED with 90003), and a publisher's retry of
a message whose first numbering died with those copies is numbered again in the new epoch:
the subscribers that saw the first numbering see the message twice, across the announced
break. No design with two copies can avoid it; that is a double fault beyond the replication
model, not a bug.

``CopyLedger`` tells the judge which serials that happened to. Before the simulation stops a
process (kill, restart, a zone's loss) it calls ``before_stop``: for each channel log the
dying process holds (as home or as copy), the entries past the newest entry of the same epoch
that a surviving process holds are recorded as destroyed. ``destroyed(channel, serial)`` is
then the predicate the checker takes (``bench/chaos/checker.check(destroyed=...)``): a
duplicate or a serial mismatch that involves a destroyed serial is counted as beyond the
model (reported apart, not a violation). Everything else is judged as before: an unannounced
jump is still a silent gap, an ACKed serial never delivered still a loss. Pure bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class CopyLedger:
    def __init__(self) -> None:
        # (channel, epoch) -> the seq ranges (after, up_to] no surviving process held
        self.ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def before_stop(self, nodes: Mapping[str, _Holder], dying: str) -> None:
        """``dying`` (one of ``nodes``, the live processes) is about to stop."""
        survivors = [_logs(node) for node_id, node in sorted(nodes.items()) if node_id != dying]
        for channel, log in sorted(_logs(nodes[dying]).items()):
            kept = max(
                (held[channel].last_seq for held in survivors
                 if channel in held and held[channel].epoch == log.epoch),
                default=0,
            )  # fmt: skip
            if kept < log.last_seq:
                self.ranges.setdefault((channel, log.epoch), []).append((kept, log.last_seq))

    def destroyed(self, channel: str, serial: str) -> bool:
        epoch, seq = split_serial(serial)
        return any(after < seq <= up_to for after, up_to in self.ranges.get((channel, epoch), ()))

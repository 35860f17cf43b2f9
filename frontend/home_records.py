"""The records a channel's home keeps (``homes.py``): the held log with its pending appends, and a
frontend's stream of a channel homed elsewhere; plus the operation limits they share. Plain data."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from frontend import peerops as O
from frontend.channel_log import ChannelLog, Entry, parse_serial
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.channels import PublishDone

RPC_TIMEOUT_S = 3.0
OPERATION_DEADLINE_MS = 15_000  # after this a publish is NACKed (if certainly refused) / an attach fails


def unavailable(channel: str, why: str = "its home cannot be reached") -> ErrorInfo:
    return ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, f"channel {channel} is unavailable: {why}")


@dataclass(slots=True)
class _Append:
    entry: Entry
    serials: list[str]
    # (done, abandon): ``abandon`` re-routes the publish if this home is demoted before the replica
    # acknowledged it (the retry is answered from whichever copy survives, never numbered twice).
    waiters: list[tuple[PublishDone, Callable[[], None]]]
    # Sent to a replica (by replicate or inside a snapshot): a copy may hold it, so it can no
    # longer be refused for certain. Never-sent appends of a blocked home can be (drop_blocked).
    sent: bool = False
    queued_ms: int = 0  # when the home appended it (a blocked home refuses it after a grace)


@dataclass(slots=True)
class Home:
    log: ChannelLog
    remote_subs: set[str] = field(default_factory=set)
    pending: deque[_Append] = field(default_factory=deque)  # appended, awaiting the replica
    replica: str | None = None
    replica_synced: bool = True
    # The last seq fanned out: readers (attach, replay) see nothing beyond it, so an entry still
    # waiting for the replica reaches every subscriber exactly once, by the fan-out.
    committed: int = 0
    relinquish: list[Callable[[], None]] = field(default_factory=list)  # handovers waiting for pending
    # Persisted channels (home_persist.py): the last seq the store holds (None: not persisted), and
    # the last seq ``replicated[0]`` acknowledged. Nothing is committed beyond what both hold.
    stored: int | None = None
    replicated: tuple[str | None, int] = (None, 0)
    replica_refreshed_ms: int = 0
    # Zone quorum (home_quorum.py): no copy can be placed and no majority to copy inside our zone
    # (nothing is ACKed); or the copy is inside our zone, by majority (entries may live in one zone).
    blocked: bool = False
    degraded: bool = False  # when an idle log was last re-sent to its replica (keep_replicas_alive)

    def waits_for(self, pub: O.Publish) -> bool:
        """``pub`` must follow an earlier publish of its connection that this log has not numbered."""
        return pub.after is not None and self.log.lookup(pub.connection_id, pub.after) is None

    def behind(self, serial: object) -> bool:
        """``serial`` is in this log's epoch but past what it has committed: someone saw entries this
        home has not (it is a stale copy not yet re-validated), so it must not answer "history lost"."""
        parsed = parse_serial(serial) if isinstance(serial, str) else None
        return parsed is not None and parsed[0] == self.log.epoch and parsed[1] > self.committed


@dataclass(slots=True)
class Stream:
    """This frontend's subscription to a channel homed elsewhere."""

    home: str
    epoch: str | None = None
    cursor: int = 0
    resyncing: bool = False

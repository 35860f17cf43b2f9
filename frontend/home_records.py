"""The records a channel's home keeps (``homes.py``): the held log with its pending appends, and a
frontend's stream of a channel homed elsewhere; plus the operation limits they share. Plain data."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from frontend import peerops as O
from frontend.channel_log import ChannelLog, Entry, epoch_born, parse_serial
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.config import FrontendConfig
    from frontend.idempotency import PublishDone

RPC_TIMEOUT_S = 3.0
OPERATION_DEADLINE_MS = 15_000  # after this a publish is NACKed (if certainly refused) / an attach fails


def publish_window(config: FrontendConfig) -> int:
    """How long a publish may be retried or held: the deadline, within the dedupe window."""
    return min(OPERATION_DEADLINE_MS, config.retention_ms // 2)


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
    # Entries up to this seq came with the log this home acquired, past what its previous home was
    # known to have committed: maybe never seen. They are committed (fanned out) once this home's
    # replica holds them, or as soon as a client shows it saw one (``HomeSide.seen``), never from
    # this home's only copy (frontend.sim seeds 2981, 6262: a blocked home exposed one, then died
    # with it; the next epoch numbered its re-sent publish again: duplicated).
    in_doubt: int = 0
    relinquish: list[Callable[[], None]] = field(default_factory=list)  # handovers waiting for pending
    # The last seq a replica confirmed while this node held the home (not what came with its copy).
    confirmed: int = 0
    tail_sent: bool = False  # the log's last entry went to the followers once the replica synced
    # Persisted channels (home_persist.py): the last seq the store holds (None: not persisted), and
    # the last seq ``replicated[0]`` acknowledged. Nothing is committed beyond what both hold.
    stored: int | None = None
    replicated: tuple[str | None, int] = (None, 0)
    replica_refreshed_ms: int = 0
    # Zone quorum (home_quorum.py): no copy can be placed and no majority to copy inside our zone
    # (nothing is ACKed); or the copy is inside our zone, by majority (entries may live in one zone).
    blocked: bool = False
    degraded: bool = False
    # The frontends of our own zone were told (CopyReleased) that another zone holds this log: once
    # per tenure, and again after each degraded stretch.
    copies_released: bool = False

    def take_blocked(self, now_ms: int, window_ms: int) -> list[_Append]:
        """Cut from the tail of the log the appends held past ``window_ms`` and never sent to any
        replica (newest first; an append that was sent may sit in a copy, so it and all before it
        stay). The caller refuses them for certain (``QuorumHomes.drop_blocked``)."""
        drop: list[_Append] = []
        for item in reversed(self.pending):
            if item.sent or now_ms - item.queued_ms < window_ms:
                break
            drop.append(item)
        if drop:
            for _ in drop:
                self.pending.pop()
            self.log.truncate_after(drop[-1].entry.first_seq - 1)
        return drop

    def tail_to_send(self) -> Entry | None:
        """Once per tenure, when the replica first holds the log: its last entry, for every follower.
        The copy a home acquired may end with entries its previous home numbered but never fanned
        out (it was demoted first); a stream lacking them resyncs on this entry and is replayed them
        (frontend.sim seed 663: with publishing over, nothing else made the followers catch up)."""
        entries = [] if self.tail_sent else self.log.entries()
        if not entries or entries[-1].last_seq != self.committed:
            return None
        self.tail_sent = True
        return entries[-1]

    def idle_since(self, cutoff_ms: int) -> bool:
        """Nothing retained, no member, no remote follower, nothing pending, no activity since
        ``cutoff_ms``: the home may be retired (if no local client listens either)."""
        lg = self.log
        return (
            not len(lg)
            and not len(lg.presence)
            and not self.remote_subs
            and not self.pending
            and lg.last_activity_ms < cutoff_ms
        )

    def waits_for(self, pub: O.Publish) -> bool:
        """``pub`` must follow an earlier publish of its connection that this log has not numbered."""
        return pub.after is not None and self.log.lookup(pub.connection_id, pub.after) is None

    def turns_away(self, pub: O.Publish, minority_known: bool) -> O.Refused | None:
        """Why this home does not take in ``pub``, sent by another frontend (None: it does).

        While the home is blocked (no copy can be placed) and its side does not yet know it is the
        minority, it would hold the append unanswered until it knows, or until the publish deadline:
        longer than the sender's request timeout, after which the sender could only take the
        outcome as unknown, never NACK it, and hold its connection's later answers behind it
        (tests/unit/frontend/test_blocked_home.py). So it is not appended: the sender retries it,
        and refuses it itself once it knows, or at the deadline. A re-send of what the log holds
        (by msgSerial or by message ids) is still answered from the log; a side that knows it is
        the minority refuses in ``_append``, for certain."""
        if self.waits_for(pub):
            return O.Refused(O.Refusal.OUT_OF_ORDER, f"msgSerial {pub.after} is not numbered yet")
        if self.replica is not None or not self.blocked or minority_known:
            return None
        held = self.log.lookup(pub.connection_id, pub.msg_serial) is not None
        if held or not self.log.ids.check(pub.messages)[1]:
            return None
        return O.Refused(O.Refusal.BLOCKED, f"{self.log.name}: no copy can be placed; not taken in")

    @property
    def settling(self) -> bool:
        """Entries in doubt that the replica's sync, on its way, is about to commit: an attach
        served now would count a rewind from before them and then get them as live messages."""
        return self.in_doubt > self.committed and self.replica is not None and not self.replica_synced

    def behind(self, serial: object) -> bool:
        """``serial`` is in this log's epoch but past what it has committed, or in a newer epoch:
        someone saw entries this home has not (it is a stale copy not yet re-validated, or the home
        of an epoch that another home already replaced), so it must not answer "history lost"."""
        parsed = parse_serial(serial) if isinstance(serial, str) else None
        if parsed is None:
            return False
        if parsed[0] != self.log.epoch:
            return epoch_born(parsed[0]) > epoch_born(self.log.epoch)
        return parsed[1] > max(self.committed, self.in_doubt)


@dataclass(slots=True)
class Stream:
    """This frontend's subscription to a channel homed elsewhere."""

    home: str
    epoch: str | None = None
    cursor: int = 0
    resyncing: bool = False


class Retries:
    """Calls due at a time: ``add``, then ``take_due`` (in the order they were added) and
    ``next_deadline`` (kept as a running minimum: the cores ask it after every input)."""

    def __init__(self) -> None:
        self._items: list[tuple[int, Callable[[int], None]]] = []
        self._next: int | None = None

    def add(self, at: int, fn: Callable[[int], None]) -> None:
        self._items.append((at, fn))
        if self._next is None or at < self._next:
            self._next = at

    def take_due(self, now_ms: int) -> list[Callable[[int], None]]:
        if self._next is None or self._next > now_ms:
            return []
        due, keep, nxt = [], [], None
        for item in self._items:  # one pass: the cores take due retries many times a second
            at = item[0]
            if at <= now_ms:
                due.append(item[1])
            else:
                keep.append(item)
                if nxt is None or at < nxt:
                    nxt = at
        self._items, self._next = keep, nxt
        return due

    def next_deadline(self) -> int | None:
        return self._next

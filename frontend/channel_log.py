"""ChannelLog: one channel's sequencer and bounded retention ring.

Theory of operation
-------------------
The log is the single source of a channel's serials. ``append`` stamps each
message ``"<epoch>:<seq>"`` with ``seq`` one more than the last, never skipping
and never reusing a number: every message ever appended under an epoch has a
distinct seq, and seqs are contiguous. One published ProtocolMessage becomes
one *entry* covering ``first_seq..last_seq``; its channelSerial is the serial
of its last message.

Entries are retained for at least ``retention_ms`` (the connection TTL plus one
idle interval) unless the count limit pushes them out first. A client holding
serial ``e:s`` can be served exactly the entries after ``s`` iff ``e`` is our
epoch, ``s`` is an entry boundary we issued, and nothing after ``s`` has been
dropped: that is ``replay_after``. Otherwise the answer is "continuity lost"
(the caller sends 90003); there is no third outcome.

Idempotent publish: the log remembers, for its retention window, the serials it
gave each ``(connectionId, msgSerial)``; a re-sent publish gets the original
serials back and is not appended twice. It also remembers client-supplied
message ids for the dedupe window (``ids``, ``frontend.idempotency``), filled
from every stored entry, so a copy that becomes home deduplicates too.

Pure: ``now_ms`` comes in; no I/O.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any

from frontend.idempotency import IdIndex
from frontend.presence_set import PresenceSet
from kernel.protocol import Action, Encoded


@dataclass(frozen=True, slots=True)
class Entry:
    first_seq: int
    last_seq: int
    timestamp_ms: int
    frame: Encoded  # the MESSAGE ProtocolMessage as delivered to subscribers
    publisher: str | None  # connectionId, for echo suppression on replay
    msg_serial: int | None = None  # the publisher's msgSerial, for idempotent re-sends

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    def tail(self, count: int) -> Entry:
        """This entry's last ``count`` messages (a rewind that starts inside a publish)."""
        messages = self.frame.wire["messages"]
        wire = dict(self.frame.wire)
        wire["messages"] = messages[len(messages) - count :]
        first = self.last_seq - count + 1
        return Entry(first, self.last_seq, self.timestamp_ms, Encoded(wire), self.publisher, self.msg_serial)

    @property
    def is_presence(self) -> bool:
        """A PRESENCE entry (one seq, any number of presence events) rather than messages."""
        return "presence" in self.frame.wire

    def to_wire(self) -> list[Any]:
        """A compact form for peer links (replication, replay to other frontends)."""
        return [
            self.first_seq,
            self.last_seq,
            self.timestamp_ms,
            self.frame.wire,
            self.publisher,
            self.msg_serial,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Entry:
        first, last, ts, wire, publisher, msg_serial = raw
        return cls(int(first), int(last), int(ts), Encoded(wire), publisher, msg_serial)


REWIND_PREFIX = "~rewind:"  # a replay cursor that asks for the newest entries (channel_params.py)


def rewind_cursor(*, count: int | None = None, since_ms: int | None = None) -> str:
    """A replay cursor for ``replay_after``: the last ``count`` messages, or those since ``since_ms``."""
    return f"{REWIND_PREFIX}n:{count}" if count is not None else f"{REWIND_PREFIX}t:{since_ms}"


def parse_rewind_cursor(cursor: str) -> tuple[str, int] | None:
    """``("n", count)`` or ``("t", since_ms)`` for a rewind cursor; None for anything else."""
    if not cursor.startswith(REWIND_PREFIX):
        return None
    kind, _, value = cursor[len(REWIND_PREFIX) :].partition(":")
    if kind not in ("n", "t") or not value.lstrip("-").isdigit() or len(value) > 18:
        return None
    return kind, int(value)


_EPOCH_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_BORN_DIGITS = 9  # base 36 milliseconds: enough until the year 5188


def new_epoch(now_ms: int, rng: Any) -> str:
    """A fresh epoch name: when it was started (base-36 ms, fixed width), then 4 random characters.

    Epochs of one channel are then ordered by birth (``epoch_born``): a home acquiring a channel
    prefers the newest epoch among the copies it finds, whatever their lengths, because the
    subscribers of a newer epoch were already told (90003) that the older one is over; going back
    to it would move their serials backwards (frontend.sim seed 5013)."""
    born, digits = max(now_ms, 0), []
    for _ in range(_BORN_DIGITS):
        born, d = divmod(born, 36)
        digits.append(_EPOCH_ALPHABET[d])
    return "".join(reversed(digits)) + "".join(rng.choice(_EPOCH_ALPHABET) for _ in range(4))


def epoch_born(epoch: str) -> int:
    """When ``epoch`` was started (``new_epoch``); 0 for a name of another shape (older releases)."""
    if len(epoch) != _BORN_DIGITS + 4:
        return 0
    try:
        return int(epoch[:_BORN_DIGITS], 36)
    except ValueError:
        return 0


def parse_serial(serial: str) -> tuple[str, int] | None:
    """Split ``"<epoch>:<seq>"``; None if it is not one of ours."""
    epoch, sep, seq = serial.rpartition(":")
    if not sep or not epoch or not seq.isdigit() or len(seq) > 18:
        return None
    return epoch, int(seq)


class ChannelLog:
    def __init__(
        self, name: str, epoch: str, *, max_messages: int, retention_ms: int, start_seq: int = 0
    ) -> None:
        self.name = name
        self.epoch = epoch
        self.max_messages = max_messages
        self.retention_ms = retention_ms
        self.last_seq = start_seq
        self._entries: list[Entry] = []
        self._head = 0  # index of the oldest live entry in _entries
        self._retained_messages = 0
        # Lowest seq s such that every entry after s is still held.
        self._floor = start_seq
        self._published: dict[tuple[str, int], tuple[int, list[str]]] = {}
        self._published_order: deque[tuple[int, tuple[str, int]]] = deque()
        self.ids = IdIndex(max_keys=max(max_messages, 1))
        self.last_activity_ms = 0
        # Entries were committed while the only copy was in the home's own zone (zone quorum,
        # frontend/home_quorum.py), and no copy in another zone has confirmed them since.
        self.zone_only = False
        self.created_ms = 0  # when this copy was made (a copy from before a lost zone may be stale)
        # A replica's copy: the home whose whole log (ReplicaSync) it took; only that home may extend
        # it entry by entry (``Replicate``), since only it is known to agree with every entry held.
        self.synced_from: str | None = None
        # The birth of a newer epoch a client showed us while this log was home (``Home.behind``): if
        # no copy of that epoch survives, the next home starts a new epoch rather than continue this
        # one, which would move that client's serial backwards.
        self.newer_epoch_born = 0
        # The highest seq of this very epoch that a client or a peer's stream showed us beyond what
        # this log holds: the epoch went on elsewhere, and that home and its copies are gone (or out
        # of sight). Continuing this copy would give those serials out again (frontend.sim seeds
        # 3038, 7315: a zone lost, then the replica that held the newest entries; the next home
        # continued an older copy and ACKed serials already ACKed: split_brain).
        self.ahead_seq = 0
        # The last seq its home had committed (fanned out) as far as this log knows: a home keeps it
        # current; a copy learns it with each entry (``Replicate``) and snapshot. Entries after it
        # may never have been seen by anyone: the next home commits them only once its own replica
        # holds them (``Home.in_doubt``; frontend.sim seeds 2981, 6262).
        self.known_committed = start_seq
        # The presence set as of seq ``presence_seq`` (presence_set.py): a home folds entries in as
        # it commits them, a replica as it installs them (``advance_presence``).
        self.presence = PresenceSet()
        self.presence_seq = start_seq
        self._serial_cache: tuple[int, str, str] | None = None  # (seq, epoch, serial): see serial()

    # -- serials ---------------------------------------------------------
    def serial(self, seq: int) -> str:
        """``epoch:seq``. The last one asked for is kept: the attaches of a channel at rest all get
        the same string, so the cursors of their sessions share it rather than hold a copy each."""
        cached = self._serial_cache
        if cached is not None and cached[0] == seq and cached[1] is self.epoch:
            return cached[2]
        text = f"{self.epoch}:{seq}"
        self._serial_cache = (seq, self.epoch, text)
        return text

    @property
    def last_serial(self) -> str:
        return self.serial(self.last_seq)

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def retained_messages(self) -> int:
        return self._retained_messages

    # -- publishing ------------------------------------------------------
    def lookup(self, connection_id: str, msg_serial: int) -> list[str] | None:
        """The serials an earlier identical publish was given, if remembered."""
        hit = self._published.get((connection_id, msg_serial))
        return hit[1] if hit else None

    def inherit_publishes(self, old: ChannelLog) -> None:
        """This log starts a new epoch in place of the copy ``old`` (which may miss entries): keep the
        serials ``old`` gave its committed publishes (and those it had kept itself), so a re-send of
        one whose ACK was lost with its home is answered with them, not numbered again under another
        serial (frontend.sim --witness seed 531: zone a lost, its data declared lost, zone b started a
        new epoch and numbered again a re-sent publish its copy held, delivered as fjduc3:50)."""
        for ts, key in old._published_order:
            hit = old._published.get(key)
            if hit is None or key in self._published or not hit[1]:
                continue
            epoch, seq = parse_serial(hit[1][-1]) or ("", 0)
            if epoch == old.epoch and seq > old.known_committed:
                continue  # in doubt: perhaps never committed (the numbering a re-send gets stands)
            self._published[key] = hit
            self._published_order.append((ts, key))

    def append(
        self,
        now_ms: int,
        messages: list[dict[str, Any]],
        envelope: dict[str, Any],
        *,
        publisher: str | None = None,
        msg_serial: int | None = None,
    ) -> tuple[list[str], Entry]:
        """Stamp ``messages`` with the next serials and retain them.

        ``envelope`` holds the ProtocolMessage fields (action, channel, id,
        connectionId, timestamp); this adds ``channelSerial`` and ``messages``.
        Returns the serials given and the stored entry. A PRESENCE envelope makes a presence
        entry: its events travel under ``presence`` and share one seq (they carry no serial).
        """
        if self._entries:
            # Non-decreasing within an epoch (a clock step back, or a new home whose clock lags),
            # so history's (time, epoch, seq) order agrees with serial order (store.py).
            now_ms = max(now_ms, self._entries[-1].timestamp_ms)
        first = self.last_seq + 1
        serials = []
        wire = dict(envelope)
        if envelope.get("action") == Action.PRESENCE:
            serials.append(self.serial(first))
            wire["presence"] = messages
        else:
            for i, m in enumerate(messages):
                s = self.serial(first + i)
                m["serial"] = s
                serials.append(s)
            wire["messages"] = messages
        last = first + len(serials) - 1
        wire["channelSerial"] = serials[-1]
        entry = Entry(first, last, now_ms, Encoded(wire), publisher, msg_serial)
        self._store(now_ms, entry, serials)
        return serials, entry

    def install(self, now_ms: int, entry: Entry) -> bool:
        """Add an entry numbered elsewhere (a replica's copy). False if it does not follow on."""
        wire = entry.frame.wire
        serials = [wire["channelSerial"]] if entry.is_presence else [m["serial"] for m in wire["messages"]]
        if {(parse_serial(str(x)) or ("", 0))[0] for x in serials} != {self.epoch}:
            return False  # another epoch's entry: not ours to hold
        if entry.last_seq <= self.last_seq:
            # A repeat is fine; a *different* entry under serials we hold means the sender is a
            # stale home numbering again what was numbered elsewhere: refuse it.
            return self.holds(entry)
        if entry.first_seq != self.last_seq + 1:
            return False
        self._store(now_ms, entry, serials)
        return True

    def holds(self, entry: Entry) -> bool:
        """Whether the entry at ``entry``'s serials is this very entry (same publish)."""
        idx = bisect.bisect_left(self._entries, entry.last_seq, lo=self._head, key=lambda e: e.last_seq)
        if idx >= len(self._entries):
            return False
        held = self._entries[idx]
        return (held.first_seq, held.last_seq, held.publisher, held.msg_serial) == (
            entry.first_seq,
            entry.last_seq,
            entry.publisher,
            entry.msg_serial,
        )

    def _store(self, now_ms: int, entry: Entry, serials: list[str]) -> None:
        self.last_seq = entry.last_seq
        self._entries.append(entry)
        self._retained_messages += entry.count
        if entry.publisher is not None and entry.msg_serial is not None:
            key = (entry.publisher, entry.msg_serial)
            self._published[key] = (entry.timestamp_ms, serials)
            self._published_order.append((entry.timestamp_ms, key))
        self.ids.record(now_ms, entry.timestamp_ms, entry.frame.wire.get("messages", ()))  # not presence
        self.last_activity_ms = now_ms
        self._trim(now_ms)

    def truncate_after(self, seq: int) -> None:
        """Forget entries after ``seq`` (appended here but never made durable by a replica)."""
        while len(self._entries) > self._head and self._entries[-1].first_seq > seq:
            entry = self._entries.pop()
            self._retained_messages -= entry.count
            if entry.publisher is not None and entry.msg_serial is not None:
                self._published.pop((entry.publisher, entry.msg_serial), None)
            self.ids.forget(entry.frame.wire.get("messages", ()))
        self.last_seq = min(self.last_seq, max(seq, self._floor))

    def supersedes(self, other: ChannelLog) -> bool:
        """Whether this copy is a better base for a new home than ``other``: more of the same epoch,
        or a newer epoch (its birth, ``epoch_born``; an older-epoch copy is stale however long)."""
        if other.epoch == self.epoch:
            return self.last_seq > other.last_seq
        return epoch_born(self.epoch) > epoch_born(other.epoch)

    def superseded(self) -> bool:
        """A client showed a serial of a newer epoch than this log's (``newer_epoch_born``), or one of
        this epoch past its end (``ahead_seq``): this copy must not be continued."""
        return self.newer_epoch_born > epoch_born(self.epoch) or self.ahead_seq > self.last_seq

    def note_serial(self, serial: object) -> None:
        """Remember ``serial`` (held by a client or a peer's stream) if it shows this log is stale."""
        parsed = parse_serial(serial) if isinstance(serial, str) else None
        if parsed is None:
            return
        epoch, seq = parsed
        if epoch == self.epoch:
            if seq > self.last_seq:
                self.ahead_seq = max(self.ahead_seq, seq)
        elif epoch_born(epoch) > epoch_born(self.epoch):
            self.newer_epoch_born = max(self.newer_epoch_born, epoch_born(epoch))

    def learn_committed(self, seq: int) -> None:
        """Its home committed up to ``seq`` (never past what this log holds; nothing below the
        floor is in doubt: it can no longer be replayed to anyone)."""
        self.known_committed = max(self.known_committed, self._floor, min(seq, self.last_seq))

    def learn_from(self, other: ChannelLog) -> None:
        """Take another copy's evidence that the channel went on past what copies hold."""
        self.newer_epoch_born = max(self.newer_epoch_born, other.newer_epoch_born)
        if other.epoch == self.epoch:
            self.ahead_seq = max(self.ahead_seq, other.ahead_seq)

    def agrees_with(self, other: ChannelLog) -> bool:
        """Whether ``other`` (same epoch) holds, at the highest serial both have, the very entry this
        log holds there: two logs that numbered the same serial for different publishes disagree."""
        if other.epoch != self.epoch:
            return False
        for entry in reversed(other.entries()):
            if entry.last_seq <= self.last_seq:
                return entry.last_seq <= self._floor or self.holds(entry)
        return True

    def advance_presence(self, upto: int | None = None) -> None:
        """Fold the presence entries after ``presence_seq`` up to seq ``upto`` (default: all held)."""
        limit = self.last_seq if upto is None else upto
        if limit <= self.presence_seq:
            return
        entries, done = self._entries, self.presence_seq
        # Usually only the entry just appended is new: look back a few before bisecting.
        idx = len(entries)
        while idx > self._head and len(entries) - idx < 8 and entries[idx - 1].last_seq > done:
            idx -= 1
        if idx > self._head and entries[idx - 1].last_seq > done:
            idx = bisect.bisect_right(entries, done, lo=self._head, hi=idx, key=lambda e: e.last_seq)
        end = idx
        while end < len(entries) and entries[end].last_seq <= limit:
            end += 1
        for entry in entries[idx:end]:
            if entry.is_presence:
                for event in entry.frame.wire["presence"]:
                    self.presence.apply(event)
        self.presence_seq = limit

    def entries(self) -> list[Entry]:
        return self._entries[self._head :]

    def snapshot(self) -> dict[str, Any]:
        """The whole log for a transfer: epoch, floor, last seq and retained entries."""
        return {
            "epoch": self.epoch,
            "floor": self._floor,
            "last_seq": self.last_seq,
            "entries": [e.to_wire() for e in self.entries()],
            "presence": self.presence.to_wire(),
            "presence_seq": self.presence_seq,
            "ahead_seq": self.ahead_seq,
            "committed": self.known_committed,
            "newer_epoch_born": self.newer_epoch_born,
            "inherited": [
                [key[0], key[1], ts, hit[1]]
                for ts, key in self._published_order
                if (hit := self._published.get(key)) is not None and self._inherited(hit[1])
            ],
        }

    def _inherited(self, serials: list[str]) -> bool:
        return bool(serials) and (parse_serial(serials[-1]) or ("",))[0] != self.epoch

    @classmethod
    def from_snapshot(
        cls, name: str, snap: dict[str, Any], *, now_ms: int, max_messages: int, retention_ms: int
    ) -> ChannelLog:
        lg = cls(
            name,
            str(snap["epoch"]),
            max_messages=max_messages,
            retention_ms=retention_ms,
            start_seq=int(snap["floor"]),
        )
        for conn, msg_serial, ts, serials in snap.get("inherited") or ():  # older than every entry
            key = (str(conn), int(msg_serial))
            lg._published[key] = (int(ts), [str(x) for x in serials])
            lg._published_order.append((int(ts), key))
        for raw in snap["entries"]:
            lg.install(now_ms, Entry.from_wire(raw))
        lg.last_seq = max(lg.last_seq, int(snap["last_seq"]))
        if not len(lg):
            lg._floor = lg.last_seq
        lg.presence = PresenceSet.from_wire(snap.get("presence"))
        lg.presence_seq = int(snap.get("presence_seq", lg.last_seq))
        lg.advance_presence()
        lg.ahead_seq = int(snap.get("ahead_seq") or 0)
        committed = snap.get("committed")  # absent (an older sender): all of it, as before
        lg.learn_committed(lg.last_seq if committed is None else int(committed))
        lg.newer_epoch_born = int(snap.get("newer_epoch_born") or 0)
        lg.last_activity_ms = lg.created_ms = now_ms
        return lg

    # -- replay ----------------------------------------------------------
    def replay_after(self, serial: str, upto: int | None = None) -> list[Entry] | None:
        """Entries after ``serial`` (up to seq ``upto``), or None when continuity from it is lost.

        ``serial`` may also be a rewind cursor (``rewind_cursor``): then the newest entries it asks
        for, never None."""
        rewind = parse_rewind_cursor(serial)
        if rewind is not None:
            return self._rewind(rewind, self.last_seq if upto is None else upto)
        parsed = parse_serial(serial)
        if parsed is None or parsed[0] != self.epoch:
            return None
        seq = parsed[1]
        limit = self.last_seq if upto is None else upto
        if seq > limit or seq < self._floor:
            return None
        idx = bisect.bisect_right(self._entries, seq, lo=self._head, key=lambda e: e.last_seq)
        if idx < len(self._entries) and self._entries[idx].first_seq != seq + 1:
            return None  # not an entry boundary we ever issued
        end = bisect.bisect_right(self._entries, limit, lo=idx, key=lambda e: e.last_seq)
        return self._entries[idx:end]

    def _rewind(self, rewind: tuple[str, int], limit: int) -> list[Entry]:
        """The newest entries up to seq ``limit``: the last ``n`` messages (the oldest entry cut to
        fit), or every entry stamped at or after ``t``."""
        kind, value = rewind
        end = bisect.bisect_right(self._entries, limit, lo=self._head, key=lambda e: e.last_seq)
        start = end
        if kind == "t":
            while start > self._head and self._entries[start - 1].timestamp_ms >= value:
                start -= 1
            return self._entries[start:end]
        held = 0
        while start > self._head and held < value:
            start -= 1
            held += self._entries[start].count
        picked = self._entries[start:end]
        if held > value and picked:
            picked[0] = picked[0].tail(picked[0].count - (held - value))
        return picked

    # -- retention -------------------------------------------------------
    def expire(self, now_ms: int) -> None:
        self._trim(now_ms)

    def next_deadline(self) -> int | None:
        """When the oldest retained entry or dedupe record ages out (ms)."""
        times = []
        if self._head < len(self._entries):
            times.append(self._entries[self._head].timestamp_ms + self.retention_ms)
        if self._published_order:
            times.append(self._published_order[0][0] + self.retention_ms)
        ids = self.ids.next_deadline()
        if ids is not None:
            times.append(ids)
        return min(times) if times else None

    def _trim(self, now_ms: int) -> None:
        cutoff = now_ms - self.retention_ms
        entries = self._entries
        while self._head < len(entries):
            e = entries[self._head]
            if e.timestamp_ms > cutoff and self._retained_messages <= self.max_messages:
                break
            self._retained_messages -= e.last_seq - e.first_seq + 1
            self._floor = e.last_seq
            self._head += 1
        if self._head > 64 and self._head * 2 > len(entries):
            del entries[: self._head]
            self._head = 0
        order = self._published_order
        while order and (order[0][0] <= cutoff or len(order) > self.max_messages):
            _, key = order.popleft()
            self._published.pop(key, None)
        self.ids.expire(now_ms)

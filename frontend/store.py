"""HistoryStore: where persisted channels keep their entries beyond the memory window.

Theory of operation
-------------------
A store holds, per channel, the entries its home committed (``StoredEntry``: the epoch, the seq
range, the home's timestamp and the MESSAGE frame as delivered), keyed by ``(channel, epoch,
first_seq)``, plus each channel's *tail*: the last epoch and seq ever written. Every operation is
one transaction, so a reader sees whole batches.

- ``append`` is idempotent and order-preserving: writing an entry first deletes any row of the same
  epoch that starts inside its range (a stale home's leftover numbering of the same serials) and
  then upserts it; the tail only moves forward within an epoch, and moves to a new epoch outright.
- ``after`` returns the entries of one epoch after a seq, oldest first (a resume's replay).
- ``page`` returns entries in history order, newest or oldest first, beyond a position (a message's
  ``(timestamp_ms, epoch, seq)``; an entry that holds messages on both sides is included).
  History order is ``(timestamp_ms, epoch, first_seq)``: within an epoch the home stamps entries
  with non-decreasing times (``ChannelLog.append``), so it agrees with seq order; across epochs it
  is wall-clock order.
- ``prune`` deletes a channel's entries older than a time, and beyond a count from the newest.

Two backends implement it: ``SQLiteStore`` (here; embedded, one file on this frontend's disk, the
default) and ``PostgresStore`` (``store_pg.py``, shared by every frontend of a cluster). Both run
their blocking drivers in worker threads (``trio.to_thread``); the SQLite connection is used by
one thread at a time under a lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import trio

from frontend.channel_log import Entry
from kernel.protocol import Encoded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredEntry:
    channel: str
    epoch: str
    first_seq: int
    last_seq: int
    timestamp_ms: int
    wire: dict[str, Any]  # the MESSAGE ProtocolMessage as delivered (channelSerial, messages)

    @classmethod
    def of(cls, channel: str, epoch: str, entry: Entry) -> StoredEntry:
        return cls(channel, epoch, entry.first_seq, entry.last_seq, entry.timestamp_ms, entry.frame.wire)

    def to_entry(self) -> Entry:
        return Entry(self.first_seq, self.last_seq, self.timestamp_ms, Encoded(self.wire), None, None)

    @property
    def position(self) -> Position:
        return (self.timestamp_ms, self.epoch, self.first_seq)


# Where an entry sits in history order: (timestamp_ms, epoch, first_seq).
Position = tuple[int, str, int]
# A channel's (retention in ms, most entries kept), or None when no rule persists it.
RuleFor = Callable[[str], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class Tail:
    epoch: str
    last_seq: int


class HistoryStore(Protocol):
    """What persisted channels need from a database (SQLiteStore, PostgresStore)."""

    kind: str  # "sqlite" or "postgresql", for metrics and logs
    # Whether every frontend of the cluster writes to this same store (PostgreSQL): only then may a
    # new home trust its tail to continue an epoch (a local SQLite file may lag the cluster).
    shared: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, entries: Sequence[StoredEntry]) -> None: ...

    async def tail(self, channel: str) -> Tail | None: ...

    async def after(self, channel: str, epoch: str, seq: int, limit: int) -> list[StoredEntry]: ...

    async def page(
        self,
        channel: str,
        *,
        backwards: bool,
        beyond: Position | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[StoredEntry]: ...

    async def prune(self, rule_for: RuleFor, now_ms: int) -> int: ...


def _dumps(wire: dict[str, Any]) -> str:
    return json.dumps(wire, separators=(",", ":"))


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    channel TEXT NOT NULL,
    epoch TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    frame TEXT NOT NULL,
    PRIMARY KEY (channel, epoch, first_seq)
);
CREATE INDEX IF NOT EXISTS history_order ON history (channel, ts, epoch, first_seq);
CREATE TABLE IF NOT EXISTS tails (
    channel TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
"""


class SqlHistoryStore:
    """The reads and pruning both SQL backends share, written once over their DB-API connections.

    A backend names its tables and its parameter mark, and runs a function on a connection in a
    worker thread (``_run``); ``append`` (whose upsert differs) is its own.
    """

    HISTORY: ClassVar[str]  # the table of entries
    TAILS: ClassVar[str]  # the table of each channel's newest (epoch, last_seq)
    MARK: ClassVar[str]  # the driver's parameter placeholder: ? or %s

    async def _run(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.format(history=self.HISTORY, tails=self.TAILS, m=self.MARK)

    async def tail(self, channel: str) -> Tail | None:
        sql = self._sql("SELECT epoch, last_seq FROM {tails} WHERE channel={m}")

        def read(db: Any) -> Tail | None:
            row = db.execute(sql, (channel,)).fetchone()
            return Tail(row[0], int(row[1])) if row else None

        return await self._run(read)

    async def after(self, channel: str, epoch: str, seq: int, limit: int) -> list[StoredEntry]:
        sql = self._sql(
            "SELECT channel, epoch, first_seq, last_seq, ts, frame FROM {history} "
            "WHERE channel={m} AND epoch={m} AND last_seq>{m} ORDER BY first_seq LIMIT {m}"
        )

        def read(db: Any) -> list[StoredEntry]:
            return [_row(r) for r in db.execute(sql, (channel, epoch, seq, limit)).fetchall()]

        return await self._run(read)

    async def page(
        self,
        channel: str,
        *,
        backwards: bool,
        beyond: Position | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[StoredEntry]:
        sql, args = _page_query(channel, backwards, beyond, start_ms, end_ms, limit, self.MARK, self.HISTORY)

        def read(db: Any) -> list[StoredEntry]:
            return [_row(r) for r in db.execute(sql, args).fetchall()]

        return await self._run(read)

    async def prune(self, rule_for: RuleFor, now_ms: int) -> int:
        """Apply each channel's rule (``rule_for``; a channel no rule persists any more is left as
        it is): delete entries older than its retention, then all but its newest ``max_entries``.
        Returns the entries deleted."""
        names_sql = self._sql("SELECT DISTINCT channel FROM {history}")
        old_sql = self._sql("DELETE FROM {history} WHERE channel={m} AND ts<{m}")
        over_sql = self._sql(
            "DELETE FROM {history} WHERE channel={m} AND (ts, epoch, first_seq) < ("
            "SELECT ts, epoch, first_seq FROM {history} WHERE channel={m} "
            "ORDER BY ts DESC, epoch DESC, first_seq DESC LIMIT 1 OFFSET {m})"
        )

        def run(db: Any) -> int:
            deleted = 0
            for (name,) in db.execute(names_sql).fetchall():
                rule = rule_for(name)
                if rule is None:
                    continue
                keep_ms, max_count = rule
                deleted += db.execute(old_sql, (name, now_ms - keep_ms)).rowcount
                deleted += db.execute(over_sql, (name, name, max_count - 1)).rowcount
            return deleted

        return await self._run(run)


class SQLiteStore(SqlHistoryStore):
    """The embedded store: one SQLite file (WAL) on this frontend's disk."""

    kind = "sqlite"
    shared = False
    HISTORY, TAILS, MARK = "history", "tails", "?"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = trio.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            db = self._db
            if db is None:
                raise RuntimeError("the history store is not open")
            return await trio.to_thread.run_sync(fn, db)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an ACKed message survives a power cut
            db.executescript(SQLITE_SCHEMA)
            return db

        self._db = await trio.to_thread.run_sync(connect)

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await trio.to_thread.run_sync(self._db.close)
                self._db = None

    async def append(self, entries: Sequence[StoredEntry]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for e in entries:
                    db.execute(
                        "DELETE FROM history WHERE channel=? AND epoch=? AND first_seq>? AND first_seq<=?",
                        (e.channel, e.epoch, e.first_seq, e.last_seq),
                    )
                    db.execute(
                        "INSERT OR REPLACE INTO history VALUES (?,?,?,?,?,?)",
                        (e.channel, e.epoch, e.first_seq, e.last_seq, e.timestamp_ms, _dumps(e.wire)),
                    )
                    db.execute(
                        "INSERT INTO tails VALUES (?,?,?) ON CONFLICT(channel) DO UPDATE SET "
                        "last_seq=CASE WHEN tails.epoch=excluded.epoch "
                        "THEN max(tails.last_seq, excluded.last_seq) ELSE excluded.last_seq END, "
                        "epoch=excluded.epoch",
                        (e.channel, e.epoch, e.last_seq),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        if entries:
            await self._run(write)


def _row(r: Sequence[Any]) -> StoredEntry:
    frame = r[5]
    wire = json.loads(frame) if isinstance(frame, str) else frame
    return StoredEntry(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), wire)


def _page_query(
    channel: str,
    backwards: bool,
    beyond: Position | None,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
    mark: str,
    table: str,
) -> tuple[str, list[Any]]:
    """The SQL of ``page`` for either backend (``mark`` is its placeholder: ? or %s; ``table`` its
    table of entries)."""
    where = [f"channel={mark}"]
    args: list[Any] = [channel]
    if beyond is not None:
        # Backwards: entries that start before the position; forwards: entries that end after it
        # (within an epoch the two orders agree), so an entry a position falls inside is included.
        cond = "(ts, epoch, first_seq) <" if backwards else "(ts, epoch, last_seq) >"
        where.append(f"{cond} ({mark}, {mark}, {mark})")
        args += list(beyond)
    if start_ms is not None:
        where.append(f"ts >= {mark}")
        args.append(start_ms)
    if end_ms is not None:
        where.append(f"ts <= {mark}")
        args.append(end_ms)
    order = "DESC" if backwards else "ASC"
    sql = (
        f"SELECT channel, epoch, first_seq, last_seq, ts, frame FROM {table} WHERE "
        + " AND ".join(where)
        + f" ORDER BY ts {order}, epoch {order}, first_seq {order} LIMIT {mark}"
    )
    args.append(limit)
    return sql, args

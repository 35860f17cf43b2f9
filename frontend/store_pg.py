"""PostgresStore: the HistoryStore shared by every frontend of a cluster (see ``store.py``).

psycopg 3 with its connection pool, run in worker threads (``trio.to_thread``): psycopg's async
mode is asyncio-only, and a blocking pool behind a bounded thread limiter is simple and solid.
Each operation borrows one pooled connection for one transaction. The schema is created on open
(``CREATE ... IF NOT EXISTS``, under an advisory lock so frontends starting together do not race).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio
from psycopg import Connection
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from frontend.store import SqlHistoryStore, StoredEntry

T = TypeVar("T")

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS continuity_history (
    channel TEXT NOT NULL,
    epoch TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    frame JSONB NOT NULL,
    PRIMARY KEY (channel, epoch, first_seq)
);
CREATE INDEX IF NOT EXISTS continuity_history_order ON continuity_history (channel, ts, epoch, first_seq);
CREATE TABLE IF NOT EXISTS continuity_tails (
    channel TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last_seq BIGINT NOT NULL
);
"""
_SCHEMA_LOCK = 7_460_311  # pg_advisory_xact_lock key for creating the schema


class PostgresStore(SqlHistoryStore):
    kind = "postgresql"
    shared = True
    HISTORY, TAILS, MARK = "continuity_history", "continuity_tails", "%s"

    def __init__(self, dsn: str, *, pool_size: int = 4, timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self._pool: ConnectionPool | None = None
        self._threads = trio.CapacityLimiter(pool_size)

    async def _run(self, fn: Callable[[Connection[Any]], T]) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the history store is not open")

        def work() -> T:
            with pool.connection(timeout=self.timeout_s) as conn, conn.transaction():
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self._threads)

    async def open(self) -> None:
        def connect() -> ConnectionPool:
            pool = ConnectionPool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                open=False,
                timeout=self.timeout_s,
                kwargs={"connect_timeout": max(1, int(self.timeout_s))},
            )
            pool.open(wait=True, timeout=self.timeout_s)
            with pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(PG_SCHEMA)
            return pool

        self._pool = await trio.to_thread.run_sync(connect)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await trio.to_thread.run_sync(pool.close)

    async def append(self, entries: Sequence[StoredEntry]) -> None:
        def write(conn: Connection[Any]) -> None:
            with conn.cursor() as cur:
                for e in entries:
                    cur.execute(
                        "DELETE FROM continuity_history WHERE channel=%s AND epoch=%s "
                        "AND first_seq>%s AND first_seq<=%s",
                        (e.channel, e.epoch, e.first_seq, e.last_seq),
                    )
                    cur.execute(
                        "INSERT INTO continuity_history VALUES (%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT (channel, epoch, first_seq) DO UPDATE SET "
                        "last_seq=excluded.last_seq, ts=excluded.ts, frame=excluded.frame",
                        (e.channel, e.epoch, e.first_seq, e.last_seq, e.timestamp_ms, Jsonb(e.wire)),
                    )
                    cur.execute(
                        "INSERT INTO continuity_tails VALUES (%s,%s,%s) ON CONFLICT (channel) DO UPDATE SET "
                        "last_seq=CASE WHEN continuity_tails.epoch=excluded.epoch "
                        "THEN greatest(continuity_tails.last_seq, excluded.last_seq) "
                        "ELSE excluded.last_seq END, epoch=excluded.epoch",
                        (e.channel, e.epoch, e.last_seq),
                    )

        if entries:
            await self._run(write)

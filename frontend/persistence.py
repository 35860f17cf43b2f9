"""Persistence: the trio driver between the pure channel core and a HistoryStore.

Theory of operation
-------------------
The pure core (homes, pubsub) never awaits. It hands this driver:

- ``write(channel, epoch, entry, done)``: the home's write-through of one entry it numbered. Entries
  go out in submission order, in batches (everything queued while the previous batch was written
  goes in the next one, one transaction each): group commit, so a burst of publishes pays for one
  fsync or one round trip, not one each. ``done()`` is called in order once the entry is durable;
  a failed batch is retried (same order) with backoff until the store takes it, logged and
  counted, so a store outage delays ACKs on persisted channels and never reorders or drops them.
- ``write_log(channel, log)``: a new home's copy of its whole log, written idempotently.
- ``tail(channel, done)`` and ``replay_after(channel, serial, upto, done)``: reads, each in a task of
  its own; ``done`` gets the answer (or ``ok=False``) back in the trio thread.
- every ``history_prune_interval_s``, one pruning pass: each persisted channel's entries older than
  its rule's ``persist`` and beyond its ``max_entries`` are deleted (``continuity_history_pruned``).

``open_store`` picks the backend from the ``history_store`` URL.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
import trio

from frontend.channel_log import ChannelLog, Entry, parse_serial
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.store import HistoryStore, SQLiteStore, StoredEntry, Tail

log = structlog.get_logger("continuity.history")

WRITE_BATCH = 512
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0
REPLAY_PAGE = 1000


def open_store(url: str) -> HistoryStore:
    if url.startswith("sqlite:"):
        return SQLiteStore(url.removeprefix("sqlite:").removeprefix("//"))
    from frontend.store_pg import PostgresStore  # psycopg is loaded only when used

    return PostgresStore(url)


class Persistence:
    def __init__(self, config: FrontendConfig, metrics: Metrics, store: HistoryStore) -> None:
        self.config = config
        self.metrics = metrics
        self.store = store
        self._queue: deque[tuple[StoredEntry, Callable[[], None] | None]] = deque()
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        # Called after a store result was handed to the core (its timer driver re-reads the deadline).
        self.on_input: Callable[[], None] = lambda: None

    # -- from the pure core (synchronous) -------------------------------------------------
    def write(self, channel: str, epoch: str, entry: Entry, done: Callable[[], None] | None) -> None:
        self._queue.append((StoredEntry.of(channel, epoch, entry), done))
        self._wake.set()

    def write_log(self, channel: str, lg: ChannelLog) -> None:
        """A new home's log: write the entries the store does not hold yet (after its tail, in the
        log's epoch; all of them if the store's tail is another epoch or it cannot say)."""
        entries = lg.entries()
        if not entries:
            return

        async def write_missing() -> None:
            try:
                tail = await self.store.tail(channel)
            except Exception as exc:
                self._read_failed("tail", channel, exc)
                tail = None
            held = tail.last_seq if tail is not None and tail.epoch == lg.epoch else 0
            for entry in entries:
                if entry.last_seq > held:
                    self.write(channel, lg.epoch, entry, None)

        self._spawn(write_missing)

    def tail(self, channel: str, done: Callable[[Tail | None, bool], None]) -> None:
        async def read() -> None:
            try:
                tail = await self.store.tail(channel)
            except Exception as exc:  # the store is down: the caller retries, it must not guess
                self._read_failed("tail", channel, exc)
                done(None, False)
                return
            done(tail, True)

        self._spawn(read)

    def replay_after(
        self, channel: str, serial: str, upto: int, limit: int, done: Callable[[list[Entry] | None], None]
    ) -> None:
        """The stored entries after ``serial`` up to seq ``upto`` (at most ``limit`` messages), if
        they follow on from it without a gap; else None."""

        async def read() -> None:
            parsed = parse_serial(serial)
            if parsed is None:
                done(None)
                return
            epoch, seq = parsed
            out: list[Entry] = []
            count = 0
            try:
                while seq < upto and count <= limit:
                    rows = await self.store.after(channel, epoch, seq, REPLAY_PAGE)
                    if not rows:
                        break
                    for row in rows:
                        if row.first_seq != seq + 1 or row.last_seq > upto:
                            break
                        out.append(row.to_entry())
                        seq = row.last_seq
                        count += row.last_seq - row.first_seq + 1
                    else:
                        continue
                    break
            except Exception as exc:
                self._read_failed("replay", channel, exc)
                done(None)
                return
            if count > limit:
                done(None)
                return
            self.metrics.history_store_replays.inc()
            done(out or None)

        self._spawn(read)

    def spawn(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (async) in the driver's nursery: a store read the pure core asked for."""
        self._spawn(fn)

    def _spawn(self, fn: Callable[[], Any]) -> None:
        assert self._nursery is not None, "Persistence.run has not started"

        async def then_wake() -> None:
            await fn()
            self.on_input()  # the read's callback fed the core in this same step

        self._nursery.start_soon(then_wake)

    def _read_failed(self, what: str, channel: str, exc: Exception) -> None:
        self.metrics.history_store_errors.labels(op=what).inc()
        log.warning("history.read_failed", op=what, channel=channel, error=repr(exc))

    # -- the driver ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.store.open()
        except Exception as exc:
            # Persisted channels cannot keep their promise without it: refuse to serve, loudly.
            log.error("history.store_unavailable", kind=self.store.kind, error=repr(exc))
            raise
        log.info("history.store_open", kind=self.store.kind)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._pruner)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self.store.close()

    async def _writer(self) -> None:
        delay = RETRY_MIN_S
        while True:
            if not self._queue:
                self._wake = trio.Event()
                await self._wake.wait()
            self.metrics.history_write_queue.set(len(self._queue))
            batch = [self._queue[i] for i in range(min(len(self._queue), WRITE_BATCH))]
            started = time.perf_counter()
            try:
                await self.store.append([row for row, _ in batch])
            except Exception as exc:
                self.metrics.history_store_errors.labels(op="write").inc()
                log.warning("history.write_failed", entries=len(batch), retry_in_s=delay, error=repr(exc))
                await trio.sleep(delay)  # backoff before retrying the same batch, in order
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self.metrics.history_write_seconds.observe(time.perf_counter() - started)
            self.metrics.history_written.inc(len(batch))
            for _ in batch:
                self._queue.popleft()
            for _, done in batch:
                if done is not None:
                    done()
            self.on_input()

    async def _pruner(self) -> None:
        interval = self.config.history_prune_interval_s
        while True:
            await trio.sleep(interval)
            await self.prune_once()

    async def prune_once(self) -> int:
        def rule(name: str) -> tuple[int, int] | None:
            r = self.config.persist_rule(name)
            return None if r is None else (r.persist_ms, r.max_entries)

        try:
            deleted = await self.store.prune(rule, int(time.time() * 1000))
        except Exception as exc:
            self.metrics.history_store_errors.labels(op="prune").inc()
            log.warning("history.prune_failed", error=repr(exc))
            return 0
        self.metrics.history_pruned.inc(deleted)
        if deleted:
            log.info("history.pruned", entries=deleted)
        return deleted

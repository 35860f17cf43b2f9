"""The history stores on real databases: SQLite on disk and a real PostgreSQL (started here).

Both backends must agree on every operation the persisted channels rely on: idempotent,
order-keeping appends that replace a stale numbering; the tail; the entries after a serial;
history pages in either direction; and pruning by age and by count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from frontend.history import read_stored, until_attach_cursor
from frontend.persistence import open_store
from frontend.store import HistoryStore, StoredEntry, Tail
from tests.support.postgres import running_postgres


def entry(seq: int, ts: int, *, epoch: str = "e1", count: int = 1, data: str = "") -> StoredEntry:
    msgs = [{"data": data or f"m{s}", "serial": f"{epoch}:{s}"} for s in range(seq, seq + count)]
    wire = {"action": 15, "channel": "ch", "channelSerial": f"{epoch}:{seq + count - 1}", "messages": msgs}
    return StoredEntry("ch", epoch, seq, seq + count - 1, ts, wire)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HistoryStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:{tmp_path / 'h.sqlite3'}")
        await s.open()
        yield s
        await s.close()
        return
    with running_postgres(tmp_path / "pg") as dsn:
        s = open_store(dsn)
        with trio.fail_after(60):
            await s.open()
        yield s
        await s.close()


async def test_append_tail_after_and_replace(store: HistoryStore) -> None:
    with trio.fail_after(30):
        await store.append([entry(1, 100), entry(2, 110, count=2), entry(4, 120)])
        await store.append([entry(4, 120)])  # idempotent
        assert await store.tail("ch") == Tail("e1", 4)
        assert await store.tail("other") is None
        got = await store.after("ch", "e1", 1, 10)
        assert [(e.first_seq, e.last_seq) for e in got] == [(2, 3), (4, 4)]
        assert got[0].wire["messages"][1]["serial"] == "e1:3"
        # A new home numbering 2..3 again differently replaces the stale rows (2..3 became 2, 3).
        await store.append([entry(2, 130, data="x"), entry(3, 131, data="y")])
        got = await store.after("ch", "e1", 1, 10)
        assert [(e.first_seq, e.last_seq, e.wire["messages"][0]["data"]) for e in got] == [
            (2, 2, "x"),
            (3, 3, "y"),
            (4, 4, "m4"),
        ]
        # A new epoch moves the tail outright.
        await store.append([entry(1, 200, epoch="e2")])
        assert await store.tail("ch") == Tail("e2", 1)


async def test_pages_in_both_directions_with_bounds(store: HistoryStore) -> None:
    with trio.fail_after(30):
        await store.append([entry(s, 1000 + s) for s in range(1, 11)])
        newest = await store.page("ch", backwards=True, beyond=None, start_ms=None, end_ms=None, limit=3)
        assert [e.first_seq for e in newest] == [10, 9, 8]
        older = await store.page(
            "ch", backwards=True, beyond=newest[-1].position, start_ms=None, end_ms=None, limit=3
        )
        assert [e.first_seq for e in older] == [7, 6, 5]
        forward = await store.page("ch", backwards=False, beyond=None, start_ms=1003, end_ms=1005, limit=10)
        assert [e.first_seq for e in forward] == [3, 4, 5]


async def test_prune_by_age_and_count(store: HistoryStore) -> None:
    with trio.fail_after(30):
        await store.append([entry(s, 1000 * s) for s in range(1, 21)])
        # Retention 10 s at now=20 s drops ts < 10 s (seqs 1..9); then at most 5 entries remain.
        deleted = await store.prune(lambda name: (10_000, 5) if name == "ch" else None, 20_000)
        assert deleted == 15
        left = await store.page("ch", backwards=False, beyond=None, start_ms=None, end_ms=None, limit=50)
        assert [e.first_seq for e in left] == [16, 17, 18, 19, 20]
        assert await store.tail("ch") == Tail("e1", 20)  # the tail outlives pruning
        assert await store.prune(lambda name: None, 20_000) == 0


async def test_read_stored_pages_by_serial_across_entries_and_epochs(store: HistoryStore) -> None:
    with trio.fail_after(30):
        # Epoch e1 (before a restart that lost the store's tail, say), then e2; batches of 2 and 3.
        await store.append([entry(1, 100), entry(2, 101, count=2), entry(4, 102, count=3)])
        await store.append([entry(1, 200, epoch="e2"), entry(2, 201, epoch="e2", count=2)])
        everything = ["e1:1", "e1:2", "e1:3", "e1:4", "e1:5", "e1:6", "e2:1", "e2:2", "e2:3"]
        seen: list[str] = []
        cursor = None
        while True:
            page = await read_stored(store, "ch", limit=2, cursor=cursor)
            seen += [m["serial"] for m in page.messages]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == list(reversed(everything))
        forward: list[str] = []
        cursor = None
        while True:
            page = await read_stored(store, "ch", limit=4, backwards=False, cursor=cursor)
            forward += [m["serial"] for m in page.messages]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert forward == everything


async def test_until_attach_is_exactly_what_precedes_the_attach_point(store: HistoryStore) -> None:
    with trio.fail_after(30):
        await store.append([entry(s, 100 + s) for s in range(1, 9)])
        # Attached at e1:5 (rewind or not): history untilAttach is 5, 4, ... 1; 6.. come live.
        page = await read_stored(store, "ch", cursor=until_attach_cursor("e1:5"))
        assert [m["serial"] for m in page.messages] == [f"e1:{s}" for s in range(5, 0, -1)]
        # Attached at the newest serial: everything.
        page = await read_stored(store, "ch", cursor=until_attach_cursor("e1:8"))
        assert len(page.messages) == 8 and page.next_cursor is None

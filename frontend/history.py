"""History of persisted channels, read from the store: the pages ``GET /channels/{id}/messages``
and realtime ``channel.history()`` (ably-js sends ``from_serial`` for ``untilAttach``) serve.

Theory of operation
-------------------
A persisted channel's home commits (fans out, ACKs) an entry only once the store holds it
(``home_persist.py``), so the store holds every message any subscriber could have seen, across
home moves, kills and whole-cluster restarts: its history is read from the store alone, in one
order, with no seam between what is still in memory and what is only on disk. A channel no rule
persists is read from its in-memory log at the home (the REST layer's reader).

Paging is by serial, as for the memory log: ``cursor`` is the serial of the last message of the
previous page and the next page continues strictly beyond it (backwards: older). A serial names a
position in history order ``(timestamp_ms, epoch, seq)`` (``store.py``); it is resolved in the
store by the entry that holds it, or, for a serial never issued (an attach point ``E:L`` turned
into the cursor ``E:L+1`` for untilAttach), the first entry after it. So paging crosses epochs
(a cluster restarted without any copy in memory starts a new epoch only if the store was lost)
and an untilAttach page is exactly what precedes the attach point: no gap, no overlap with what
the subscription delivers after it. ``start``/``end`` bound the time (inclusive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from frontend.channel_log import Entry, parse_serial
from frontend.store import HistoryStore, Position, StoredEntry

if TYPE_CHECKING:
    from frontend.config import FrontendConfig
    from frontend.persistence import Persistence

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class StoredPage:
    messages: list[dict[str, Any]]
    next_cursor: str | None  # the serial to continue beyond; None on the last page


def until_attach_cursor(from_serial: str) -> str | None:
    """ably-js's ``from_serial`` (the attach point ``E:L``, RTL10b) as a backwards cursor: the
    messages up to and including ``E:L``, i.e. strictly before ``E:L+1``."""
    parsed = parse_serial(from_serial)
    return None if parsed is None else f"{parsed[0]}:{parsed[1] + 1}"


async def read_stored(
    store: HistoryStore,
    channel: str,
    *,
    limit: int = DEFAULT_LIMIT,
    backwards: bool = True,
    start: int | None = None,
    end: int | None = None,
    cursor: str | None = None,
) -> StoredPage:
    """One page of a persisted channel's history from ``store``."""
    beyond: Position | None = None
    edge: tuple[str, int] | None = None  # (epoch, seq) of the cursor: messages beyond it only
    if cursor is not None:
        parsed = parse_serial(cursor)
        if parsed is None:
            return StoredPage([], None)
        epoch, seq = parsed
        holder = await store.after(channel, epoch, seq - 1, 1)
        if holder:
            beyond = (holder[0].timestamp_ms, epoch, seq)
            edge = parsed
        elif not backwards:
            return StoredPage([], None)  # nothing stored beyond it in its epoch, nor after it
        # backwards past everything stored in its epoch: no bound (older epochs, and that one)
    picked: list[dict[str, Any]] = []
    more = False
    scanned = beyond
    while not more:
        rows = await store.page(
            channel, backwards=backwards, beyond=scanned, start_ms=start, end_ms=end, limit=limit + 1
        )
        for row in rows:
            for msg in _messages(row, backwards, edge):
                if len(picked) == limit:
                    more = True
                    break
                picked.append(msg)
            if more:
                break
        if len(rows) <= limit or more:
            break
        last = rows[-1]
        scanned = last.position if backwards else (last.timestamp_ms, last.epoch, last.last_seq)
        edge = None
    next_cursor = str(picked[-1].get("serial")) if more and picked else None
    return StoredPage(picked, next_cursor)


def read_memory(
    channel: str,
    epoch: str,
    entries: list[Entry],
    *,
    limit: int = DEFAULT_LIMIT,
    backwards: bool = True,
    start: int | None = None,
    end: int | None = None,
    cursor: str | None = None,
) -> StoredPage:
    """One page of a memory-only channel's history from its log's committed ``entries`` (one
    epoch, in serial order), with the same paging as ``read_stored``."""
    edge: tuple[str, int] | None = None
    if cursor is not None:
        edge = parse_serial(cursor)
        if edge is None or edge[0] != epoch:
            return StoredPage([], None)  # that epoch's history is gone
    ordered = reversed(entries) if backwards else iter(entries)
    picked: list[dict[str, Any]] = []
    for entry in ordered:
        ts = entry.timestamp_ms
        if (start is not None and ts < start) or (end is not None and ts > end):
            continue
        if edge is not None and (entry.first_seq >= edge[1] if backwards else entry.last_seq <= edge[1]):
            continue
        row = StoredEntry(channel, epoch, entry.first_seq, entry.last_seq, ts, entry.frame.wire)
        for msg in _messages(row, backwards, edge):
            if len(picked) == limit:
                return StoredPage(picked, str(picked[-1].get("serial")))
            picked.append(msg)
    return StoredPage(picked, None)


def _messages(row: StoredEntry, backwards: bool, edge: tuple[str, int] | None) -> list[dict[str, Any]]:
    """A row's messages in page order, less those at or beyond the cursor in its own epoch."""
    msgs = list(enumerate(row.wire["messages"], start=row.first_seq))
    if edge is not None and row.epoch == edge[0]:
        msgs = [(s, m) for s, m in msgs if (s < edge[1] if backwards else s > edge[1])]
    if backwards:
        msgs.reverse()
    return [m for _, m in msgs]


class PageQuery(Protocol):
    """What a history read asks (the REST layer's HistoryQuery has these fields)."""

    limit: int
    backwards: bool
    start: int | None
    end: int | None
    cursor: str | None


class PageReader(Protocol):
    async def read(self, channel: str, query: Any) -> Any: ...


class Persisting(Protocol):
    """What PersistedHistory reads of the node (FrontendNode has both)."""

    config: FrontendConfig
    persistence: Persistence | None


class PersistedHistory:
    """A history reader: persisted channels from the store, every other channel from ``memory``
    (the in-memory log at the home). The REST endpoint and realtime ``history()`` call ``read``.
    The node's persistence is read at each call (the driver sets it once the store is open)."""

    def __init__(self, node: Persisting, memory: PageReader) -> None:
        self.node = node
        self.memory = memory

    async def read(self, channel: str, query: Any) -> Any:
        """One page for ``query`` (a ``PageQuery``: the REST layer's HistoryQuery)."""
        persistence = self.node.persistence
        if persistence is None or self.node.config.persist_rule(channel) is None:
            return await self.memory.read(channel, query)
        return await read_stored(
            persistence.store,
            channel,
            limit=query.limit,
            backwards=query.backwards,
            start=query.start,
            end=query.end,
            cursor=query.cursor,
        )

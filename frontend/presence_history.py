"""Presence history: ``GET /channels/{id}/presence/history`` (RSP4), the presence events of a channel.

Theory of operation
-------------------
Presence events are entries of the channel's log (``presence.py``), so their history is read
where message history is: from the log at the channel's home, wherever that is
(``LogHistory``, here or over the peer op ``presence_history``), only what the home has
committed. It covers what the log retains in memory (the connection TTL plus one idle
interval, or the channel's ``max_entries``): presence entries are not written to a persisted
channel's store.

A presence entry holds one or more events under one serial (the entry's channelSerial), so a
page is cut at entry boundaries: it holds at most ``limit`` events, except that an entry with
more events than the limit is never split (a page always makes progress). The ``next`` cursor
is the serial of the page's last entry; the next page continues strictly before it
(backwards, newest first, the default) or after it (forwards). ``start``/``end`` bound the
entries' timestamps (inclusive). Pure page cutting: ``presence_page``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from frontend.channel_log import Entry, parse_serial
from frontend.rest.history import HistoryPage, HistoryQuery, LogHistory


def presence_page(epoch: str, entries: Iterable[Entry], query: HistoryQuery) -> HistoryPage:
    """One page of presence events from a log's committed entries (in serial order)."""
    bound: int | None = None
    if query.cursor is not None:
        parsed = parse_serial(query.cursor)
        if parsed is None or parsed[0] != epoch:
            return HistoryPage([], None)  # that epoch's history is gone
        bound = parsed[1]
    picked: list[dict[str, Any]] = []
    last_serial: str | None = None
    more = False
    ordered = reversed(list(entries)) if query.backwards else entries
    for entry in ordered:
        if not entry.is_presence:
            continue
        if bound is not None and (entry.first_seq >= bound if query.backwards else entry.first_seq <= bound):
            continue
        ts = entry.timestamp_ms
        if (query.start is not None and ts < query.start) or (query.end is not None and ts > query.end):
            continue
        events = [dict(e) for e in entry.frame.wire["presence"]]
        if picked and len(picked) + len(events) > query.limit:
            more = True
            break
        if query.backwards:
            events.reverse()
        picked.extend(events)
        last_serial = str(entry.frame.wire["channelSerial"])
    return HistoryPage(picked, last_serial if more else None)


class PresenceHistory(LogHistory):
    """Presence history from the channel's log at its home (a HistoryReader)."""

    KIND = "presence_history"

    def cut(self, epoch: str, entries: list[Entry], query: HistoryQuery) -> HistoryPage:
        return presence_page(epoch, entries, query)

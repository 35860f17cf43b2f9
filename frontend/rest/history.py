"""Channel history for ``GET /channels/{id}/messages``, behind a small interface.

Theory of operation
-------------------
``HistoryReader.read(channel, query)`` answers one page. ``LogHistory`` reads the
channel's in-memory log at its home, wherever the home is: here (acquiring it if
placement names us), or on another frontend over the peer link (op ``history``),
retried within a deadline while the home moves. It reads only what the home has
committed (fanned out), so history never shows a message a subscriber could not
have seen. Persisted stores and rewind plug in behind the same interface.

Paging is by serial: a page's ``next`` cursor is the serial of its last message,
and the next page starts strictly after it (backwards: before it). Serials are
stable across home moves (the epoch continues), so paging survives a move; a
cursor from an epoch the log no longer holds gives an empty page. ``start`` and
``end`` bound the message timestamps (inclusive). Pure page cutting:
``page_of``; the driver is async.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from frontend import peerops as O
from frontend.channel_log import Entry, parse_serial
from frontend.history import until_attach_cursor
from frontend.homes import OPERATION_DEADLINE_MS, RPC_TIMEOUT_S
from frontend.rest.wire import RestError
from kernel.errors import ErrorCode

if TYPE_CHECKING:
    from frontend.node import FrontendNode

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    backwards: bool = True
    start: int | None = None
    end: int | None = None
    cursor: str | None = None  # continue strictly after (forwards) / before (backwards) this serial

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> HistoryQuery:
        def number(name: str) -> int | None:
            raw = params.get(name)
            if raw in (None, ""):
                return None
            try:
                return int(str(raw))
            except ValueError:
                raise RestError(ErrorCode.INVALID_PARAMETER, f"{name} must be an integer") from None

        limit = number("limit")
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise RestError(ErrorCode.INVALID_PARAMETER, f"limit must be 1..{MAX_LIMIT}")
        direction = params.get("direction") or "backwards"
        if direction not in ("backwards", "forwards"):
            raise RestError(ErrorCode.INVALID_PARAMETER, "direction must be backwards or forwards")
        start, end = number("start"), number("end")
        if start is not None and end is not None and start > end:
            raise RestError(ErrorCode.INVALID_PARAMETER, "start must not be after end")
        cursor = params.get("fromSerial") or None
        until = params.get("from_serial") or None  # ably-js untilAttach: the attach point (RTL10b)
        if cursor is None and until is not None:
            cursor = until_attach_cursor(until)  # up to and including it: strictly before the next
        if cursor is not None and parse_serial(cursor) is None:
            raise RestError(ErrorCode.INVALID_PARAMETER, "fromSerial is not a serial")
        return cls(limit or DEFAULT_LIMIT, direction == "backwards", start, end, cursor)

    def to_params(self, *, cursor: str | None) -> dict[str, str]:
        out = {"limit": str(self.limit), "direction": "backwards" if self.backwards else "forwards"}
        if self.start is not None:
            out["start"] = str(self.start)
        if self.end is not None:
            out["end"] = str(self.end)
        if cursor is not None:
            out["fromSerial"] = cursor
        return out

    def to_wire(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "backwards": self.backwards,
            "start": self.start,
            "end": self.end,
            "cursor": self.cursor,
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> HistoryQuery:
        def opt(name: str) -> int | None:
            v = raw.get(name)
            return int(v) if isinstance(v, int) else None

        cursor = raw.get("cursor")
        return cls(
            int(raw.get("limit") or DEFAULT_LIMIT),
            bool(raw.get("backwards", True)),
            opt("start"),
            opt("end"),
            cursor if isinstance(cursor, str) else None,
        )


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[dict[str, Any]]
    next_cursor: str | None  # None: this is the last page


class HistoryReader(Protocol):
    """Where history comes from (the in-memory log now; persisted stores later)."""

    async def read(self, channel: str, query: HistoryQuery) -> HistoryPage: ...


def page_of(epoch: str, entries: Iterable[Entry], query: HistoryQuery) -> HistoryPage:
    """Cut one page from a log's committed entries (in serial order)."""
    after: int | None = None
    before: int | None = None
    if query.cursor is not None:
        parsed = parse_serial(query.cursor)
        if parsed is None or parsed[0] != epoch:
            return HistoryPage([], None)  # that epoch's history is gone
        if query.backwards:
            before = parsed[1]
        else:
            after = parsed[1]
    picked: list[dict[str, Any]] = []
    more = False
    ordered = reversed(list(entries)) if query.backwards else entries
    for entry in ordered:
        if (before is not None and entry.first_seq >= before) or (
            after is not None and entry.last_seq <= after
        ):
            continue
        msgs = [
            (seq, m)
            for seq, m in enumerate(entry.frame.wire.get("messages", ()), start=entry.first_seq)
            if (before is None or seq < before) and (after is None or seq > after)
        ]
        if query.backwards:
            msgs.reverse()
        for _, m in msgs:
            ts = m.get("timestamp")
            if isinstance(ts, int) and (
                (query.start is not None and ts < query.start) or (query.end is not None and ts > query.end)
            ):
                continue
            if len(picked) == query.limit:
                more = True
                break
            picked.append(m)
        if more:
            break
    cursor = str(picked[-1].get("serial")) if more and picked else None
    return HistoryPage(picked, cursor)


class LogHistory:
    """History from the channel's log at its home, wherever that is (a HistoryReader)."""

    KIND = "history"  # the peer op (a RestCall kind); presence history reads the same log

    def __init__(self, node: FrontendNode, now_ms: Callable[[], int]) -> None:
        self.node = node
        self.now_ms = now_ms
        node.peer_ops[self.KIND] = self.serve

    def cut(self, epoch: str, entries: list[Entry], query: HistoryQuery) -> HistoryPage:
        """One page of the home's committed ``entries`` (messages; presence overrides this)."""
        return page_of(epoch, entries, query)

    async def read(self, channel: str, query: HistoryQuery) -> HistoryPage:
        event = trio.Event()
        out: list[HistoryPage | None] = []

        def done(page: HistoryPage | None) -> None:
            if not event.is_set():
                out.append(page)
                event.set()

        now = self.now_ms()
        self._read(now, channel, query, done, now + OPERATION_DEADLINE_MS)
        self.node.wake()
        with trio.move_on_after(OPERATION_DEADLINE_MS / 1000 + RPC_TIMEOUT_S):
            await event.wait()
        if not out or out[0] is None:
            raise RestError(
                ErrorCode.INTERNAL_CHANNEL, f"history of {channel} is unavailable: no home answered"
            )
        return out[0]

    def _read(
        self,
        now_ms: int,
        channel: str,
        query: HistoryQuery,
        done: Callable[[HistoryPage | None], None],
        deadline: int,
    ) -> None:
        channels = self.node.channels

        def again(t: int) -> None:
            self._read(t, channel, query, done, deadline)

        def retry() -> None:
            channels._retry(channels.now_ms, deadline, again, lambda: done(None))

        home = channels.home_of(channel)
        if home == self.node.node_id or channels.bus is None:
            self._local(now_ms, channel, query, lambda page: retry() if page is None else done(page))
            return

        def on_reply(ok: bool, res: Any) -> None:
            if ok and isinstance(res, dict):
                done(HistoryPage(list(res.get("messages") or []), res.get("next")))
            else:
                retry()

        channels.bus.request(
            home,
            O.RestCall(kind=self.KIND, args={"channel": channel, "query": query.to_wire()}),
            on_reply,
            RPC_TIMEOUT_S,
        )

    def _local(
        self, now_ms: int, channel: str, query: HistoryQuery, done: Callable[[HistoryPage | None], None]
    ) -> None:
        channels = self.node.channels

        def then(ok: bool) -> None:
            home = channels.homes.get(channel) if ok else None
            if home is None:
                done(None)
                return
            committed = [e for e in home.log.entries() if e.last_seq <= home.committed]
            done(self.cut(home.log.epoch, committed, query))

        channels.home_side.with_home(now_ms, channel, then)

    def serve(self, now_ms: int, src: str, args: dict[str, Any], reply: Callable[[bool, Any], None]) -> None:
        """Peer op ``history``: a page from the log we are home of (refused if we are not)."""
        channel = args.get("channel")
        if not isinstance(channel, str) or not isinstance(args.get("query"), dict):
            reply(False, O.Refused(O.Refusal.BAD_REQUEST, "history needs a channel and a query"))
            return
        if self.node.channels.home_of(channel) != self.node.node_id:
            reply(False, O.Refused(O.Refusal.NOT_HOME, f"not home for {channel}"))
            return
        query = HistoryQuery.from_wire(args["query"])

        def done(page: HistoryPage | None) -> None:
            if page is None:
                reply(False, O.Refused(O.Refusal.ACQUIRING, f"acquiring {channel}"))
            else:
                reply(True, {"messages": page.messages, "next": page.next_cursor})

        self._local(now_ms, channel, query, done)

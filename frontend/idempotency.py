"""Idempotent publish by client-supplied message ids, held with the channel log.

Theory of operation
-------------------
A publish whose messages carry ``id`` s is deduplicated at the channel's home for
``DEDUPE_WINDOW_MS`` (two minutes, as Ably does), whatever transport it came by
(REST, or a realtime MESSAGE re-sent under a new connection).

The *keys* of a publish: an atomic batch (more than one message, with ids
``<base>:0`` .. ``<base>:<n-1>`` in order, RSL1k1) is one key, ``<base>``; any
other publish has one key per message that carries an id. A key remembers the
serials it was given. A publish all of whose keys are remembered is a duplicate
and is answered with the remembered serials; a non-atomic publish some of whose
messages are remembered has those messages dropped (they were delivered), and
the rest appended.

The index is filled from every entry stored in the log (``IdIndex.record``),
whether appended at the home or installed in a copy (replication, snapshot),
so a copy that becomes home after a move or a failure keeps deduplicating: the
dedupe travels with the log. Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kernel.errors import ErrorInfo

DEDUPE_WINDOW_MS = 120_000


def atomic_base(ids: Sequence[object]) -> str | None:
    """``<base>`` when ``ids`` are ``<base>:0`` .. ``<base>:<n-1>`` (n > 1) in order, else None."""
    if len(ids) < 2:
        return None
    first = ids[0]
    if not isinstance(first, str) or not first.endswith(":0"):
        return None
    base = first[:-2]
    if not base:
        return None
    for i, mid in enumerate(ids):
        if mid != f"{base}:{i}":
            return None
    return base


def publish_keys(messages: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The dedupe key of each message of one publish (None: the message has no id)."""
    ids = [m.get("id") for m in messages]
    base = atomic_base(ids)
    if base is not None:
        return [f"batch:{base}"] * len(ids)
    return [f"id:{mid}" if isinstance(mid, str) and mid else None for mid in ids]


class IdIndex:
    """Dedupe keys -> serials for the window, bounded by ``max_keys``."""

    def __init__(self, *, window_ms: int = DEDUPE_WINDOW_MS, max_keys: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_keys = max_keys
        self._serials: dict[str, tuple[int, list[str]]] = {}
        self._order: deque[tuple[int, str]] = deque()

    def __len__(self) -> int:
        return len(self._serials)

    def record(self, now_ms: int, timestamp_ms: int, messages: Iterable[Mapping[str, Any]]) -> None:
        """Remember the keys of a stored entry's ``messages`` (each stamped with its serial)."""
        msgs = messages if isinstance(messages, list) else list(messages)
        if not any(m.get("id") for m in msgs):
            self.expire(now_ms)  # nothing to remember (most publishes carry no id)
            return
        grouped: dict[str, list[str]] = {}
        for key, m in zip(publish_keys(msgs), msgs, strict=True):
            if key is not None:
                grouped.setdefault(key, []).append(str(m.get("serial")))
        for key, serials in grouped.items():
            if key not in self._serials:
                self._order.append((timestamp_ms, key))
            self._serials[key] = (timestamp_ms, serials)
        self.expire(now_ms)

    def forget(self, messages: Iterable[Mapping[str, Any]]) -> None:
        """Drop the keys of an entry cut from the log (never made durable)."""
        for key in publish_keys(list(messages)):
            if key is not None:
                self._serials.pop(key, None)

    def check(self, messages: Sequence[Mapping[str, Any]]) -> tuple[dict[int, str], list[int]]:
        """``(known, fresh)``: the remembered serial of each message index that was published
        already, and the indexes of the messages to append (none: the publish is a duplicate)."""
        keys = publish_keys(messages)
        known: dict[int, str] = {}
        fresh: list[int] = []
        used: dict[str, int] = {}
        for i, key in enumerate(keys):
            hit = self._serials.get(key) if key is not None else None
            if key is None or hit is None:
                fresh.append(i)
                continue
            # An atomic batch's key holds one serial per message, in order; an id key holds one.
            n = used.get(key, 0)
            remembered = hit[1]
            known[i] = remembered[min(n, len(remembered) - 1)]
            used[key] = n + 1
        if fresh and known and keys[0] is not None and keys[0].startswith("batch:"):
            return {}, list(range(len(keys)))  # never split an atomic batch
        return known, fresh

    def expire(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        order = self._order
        while order and (order[0][0] <= cutoff or len(order) > self.max_keys):
            ts, key = order.popleft()
            held = self._serials.get(key)
            if held is not None and held[0] == ts:
                del self._serials[key]

    def next_deadline(self) -> int | None:
        return self._order[0][0] + self.window_ms if self._order else None


def merge_serials(
    count: int, known: Mapping[int, str], fresh: Sequence[int], new: Sequence[str]
) -> list[str]:
    """The answer to a publish of ``count`` messages: remembered serials where ``known``, the
    serials just given (``new``, one per ``fresh`` index) elsewhere."""
    out = dict(known)
    out.update(zip(fresh, new, strict=True))
    return [out[i] for i in range(count)]


PublishDone = Callable[[list[str] | None, ErrorInfo | None], None]


@dataclass(frozen=True, slots=True)
class Screened:
    """What is left of a publish after the dedupe check."""

    fresh: list[Any] | None  # the messages to append; None: all answered already
    done: PublishDone  # call with the serials given to ``fresh``: it answers the whole publish
    duplicate: bool  # some message was a duplicate


def screen(
    index: IdIndex,
    messages: Sequence[Any],
    done: PublishDone,
    wait: Callable[[int, PublishDone], bool],
) -> Screened:
    """Check ``messages`` against ``index``. A full duplicate is answered with its serials, once the
    append that holds them is replicated if it still waits (``wait(seq, answer)`` is True when it
    queued ``answer`` on that append); a partial one leaves only the fresh messages to append."""
    known, fresh = index.check(messages)
    if not known:
        return Screened(list(messages), done, False)
    if not fresh:
        serials = list(known.values())
        last = max(int(x.rpartition(":")[2]) if x.rpartition(":")[2].isdigit() else 0 for x in serials)
        if not wait(last, lambda _s, err: done(serials, err)):
            done(serials, None)
        return Screened(None, done, True)

    def merged(new: list[str] | None, err: ErrorInfo | None) -> None:
        done(None if new is None else merge_serials(len(known) + len(fresh), known, fresh, new), err)

    return Screened([messages[i] for i in fresh], merged, True)


def wait_on(pending: Iterable[Any], seq: int, answer: PublishDone, abandon: Callable[[], None]) -> bool:
    """Queue ``answer`` on the pending append (a home's ``_Append``: ``entry``, ``waiters``) that
    holds ``seq``; False when none does (it is replicated already)."""
    for item in pending:
        if item.entry.first_seq <= seq <= item.entry.last_seq:
            item.waiters.append((answer, abandon))
            return True
    return False

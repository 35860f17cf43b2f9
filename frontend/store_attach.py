"""Attaches that read a persisted channel's store: a resume older than the memory window, and a
rewind reaching further back than the memory log holds. The node builds one ``StoreAttach`` and
hands it to ``PubSub``, which asks it to complete each attach; it reads the node's channel service
and store through ``StoreAttachHost``.

Theory of operation
-------------------
The memory log answers an ATTACH first, as for any channel (``ChannelService.attach``). Then:

- a *resume* it could not serve (``replay`` None: the cursor is older than its window) is served
  from the store: the stored entries after the cursor up to the attach point, without a gap
  (``Persistence.replay_after``); then the channel is attached again from the last of them, so the
  memory log's replay follows on exactly (or, if the store cannot bridge it, the first answer
  stands: 90003);
- a *rewind* the memory log could not fill (fewer than N messages, or a duration that may start
  before its oldest entry) is topped up with the newest stored messages before what the memory
  log gave (``history.read_stored``), then attached again from the first answer's serial to pick
  up whatever was published meanwhile.

Either way the session is registered only when the whole replay is queued (``_complete_attach``),
so nothing published during the store read is missed or doubled. Pure: the store is reached
through ``Persistence``, whose callbacks come back on the trio thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from frontend.channel_log import Entry, parse_rewind_cursor, parse_serial
from frontend.channels import AttachDone, AttachResult, ChannelService
from frontend.config import FrontendConfig
from frontend.history import read_stored, until_attach_cursor
from kernel.protocol import Encoded

if TYPE_CHECKING:
    from frontend.persistence import Persistence

# The most a resume replays from the store (older than the memory window); beyond it, 90003.
STORE_REPLAY_MAX_MESSAGES = 50_000
# The most a rewind by duration takes from the store (the newest of them).
STORE_REWIND_MAX_MESSAGES = 10_000


class StoreAttachHost(Protocol):
    """What ``StoreAttach`` reads on its host (``FrontendNode``): its channels and its store."""

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def channels(self) -> ChannelService: ...

    @property
    def persistence(self) -> Persistence | None: ...


class StoreAttach:
    """Completing a persisted channel's attach from its store, when the memory log falls short."""

    def __init__(self, host: StoreAttachHost) -> None:
        self.host = host

    def attach_from_store(
        self, name: str, from_serial: str | None, res: AttachResult, done: AttachDone
    ) -> bool:
        """Complete ``res`` from the store when it should be (then ``done`` is called later, and
        True returned); False when the memory log's answer stands as it is."""
        if self.host.persistence is None or not from_serial or res.error is not None:
            return False
        if self.host.config.persist_rule(name) is None:
            return False
        rewind = parse_rewind_cursor(from_serial)
        if rewind is not None:
            return self._rewind_from_store(name, rewind, res, done)
        if res.replay is None and parse_serial(from_serial) is not None:
            return self._resume_from_store(name, from_serial, res, done)
        return False

    def _resume_from_store(self, name: str, from_serial: str, res: AttachResult, done: AttachDone) -> bool:
        assert self.host.persistence is not None
        at, asked = parse_serial(res.last_serial), parse_serial(from_serial)
        if at is None or asked is None or at[0] != asked[0]:
            return False  # another epoch: the store cannot bridge it either

        def stored(entries: list[Entry] | None) -> None:
            if not entries:
                done(res)
                return
            self._attach_again(name, f"{at[0]}:{entries[-1].last_seq}", entries, res, done)

        self.host.persistence.replay_after(name, from_serial, at[1], STORE_REPLAY_MAX_MESSAGES, stored)
        return True

    def _rewind_from_store(
        self, name: str, rewind: tuple[str, int], res: AttachResult, done: AttachDone
    ) -> bool:
        persistence = self.host.persistence
        assert persistence is not None
        kind, value = rewind
        replay = res.replay or []
        held = sum(e.count for e in replay)
        if kind == "n" and held >= value:
            return False
        if replay:
            epoch = str(replay[0].frame.wire["channelSerial"]).rpartition(":")[0]
            before: str | None = f"{epoch}:{replay[0].first_seq}"
        else:
            before = until_attach_cursor(res.last_serial)
        limit = value - held if kind == "n" else STORE_REWIND_MAX_MESSAGES
        since = value if kind == "t" else None

        async def read() -> None:
            try:
                page = await read_stored(
                    persistence.store, name, limit=limit, backwards=True, start=since, cursor=before
                )
            except Exception:
                persistence.metrics.history_store_errors.labels(op="rewind").inc()
                done(res)  # the memory log's rewind stands
                return
            older = [_message_entry(m) for m in reversed(page.messages)]
            self._attach_again(name, res.last_serial, [*older, *replay], res, done)

        persistence.spawn(read)
        return True

    def _attach_again(
        self, name: str, bridge: str, entries: list[Entry], first: AttachResult, done: AttachDone
    ) -> None:
        """Attach from ``bridge`` (the last serial ``entries`` reach) and complete with ``entries``
        followed by the replay after it; the first answer stands if that fails."""

        def then(more: AttachResult) -> None:
            if more.error is not None or more.replay is None:
                done(first)
            else:
                done(AttachResult(more.last_serial, entries + more.replay))

        self.host.channels.attach(self.host.channels.now_ms, name, bridge, then)


def _message_entry(message: dict[str, object]) -> Entry:
    """One stored message as a replayable entry of its own (its serial, its publisher)."""
    serial = str(message.get("serial", ""))
    parsed = parse_serial(serial) or ("", 0)
    ts = message.get("timestamp")
    wire = {"channelSerial": serial, "messages": [message]}
    publisher = message.get("connectionId")
    return Entry(
        parsed[1],
        parsed[1],
        ts if isinstance(ts, int) else 0,
        Encoded(wire),
        publisher if isinstance(publisher, str) else None,
        None,
    )

"""The home side of persisted channels: write-through before the ACK, and an epoch continued from
the store when no copy survives in memory (docs/architecture.md, "History and persistence").

``ChannelService`` builds one ``PersistedHomes`` and its home side (``homes.py``) calls it; it reads
the homes held and the store through ``PersistHost``, and has the home side (``PersistHomeSide``)
make logs and homes. A persisted home (``Home.stored`` not None) sends each entry it numbers to the
store as it sends it to the replica (``write_through``); the home side's ``complete_replicated``
commits (fans out, ACKs) only what both hold. Pure: the store is reached through ``Persistence``,
whose callbacks come back on the trio thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from frontend.channel_log import ChannelLog, Entry

if TYPE_CHECKING:
    from frontend.bus import Bus
    from frontend.config import FrontendConfig
    from frontend.home_records import Home
    from frontend.persistence import Persistence
    from frontend.store import Tail


class PersistHost(Protocol):
    """What ``PersistedHomes`` reads on its host (``ChannelService``)."""

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def bus(self) -> Bus | None: ...

    @property
    def persistence(self) -> Persistence | None: ...

    @property
    def homes(self) -> dict[str, Home]: ...

    @property
    def now_ms(self) -> int: ...


class PersistHomeSide(Protocol):
    """What ``PersistedHomes`` calls on the home side (``homes.HomeSide``)."""

    # channel -> the callbacks waiting for its home to be acquired here
    @property
    def acquiring(self) -> dict[str, list[Callable[[bool], None]]]: ...

    def new_log(
        self, channel: str, now_ms: int, *, epoch: str | None = None, start_seq: int = 0
    ) -> ChannelLog: ...

    def become_home(
        self, now_ms: int, channel: str, lg: ChannelLog | None, subs: set[str], source: str,
        *, store_checked: bool = False,
    ) -> None: ...

    def complete_replicated(self, now_ms: int, channel: str, home: Home, *, upto: int) -> None: ...


class PersistedHomes:
    """Write-through and store-continued epochs for the homes of its host."""

    def __init__(self, host: PersistHost, home_side: PersistHomeSide) -> None:
        self.host = host
        self.home_side = home_side

    def acquire_from_store(self, channel: str, subs: set[str], source: str) -> bool:
        """No copy survives in memory: continue the epoch the store holds (nothing beyond its tail
        was ever fanned out or ACKed, so no serial anyone saw is numbered again). Only a store every
        frontend writes to (or a standalone node's own) knows the true tail; False otherwise (the
        caller starts a new epoch). Or start a new epoch if the store has never seen the channel.
        Requests wait meanwhile, as for any acquire; if the store cannot answer, they fail and are
        retried (never guess a new epoch)."""
        host, side = self.host, self.home_side
        persist = host.persistence
        if persist is None or host.config.persist_rule(channel) is None:
            return False
        if not (persist.store.shared or self.host.bus is None):
            return False

        def from_store(tail: Tail | None, ok: bool) -> None:
            if channel not in self.home_side.acquiring or channel in self.host.homes:
                return
            if not ok:
                for cb in self.home_side.acquiring.pop(channel, []):
                    cb(False)
                return
            lg = None
            if tail is not None:
                lg = side.new_log(channel, host.now_ms, epoch=tail.epoch, start_seq=tail.last_seq)
            side.become_home(host.now_ms, channel, lg, subs, "store" if tail else source, store_checked=True)

        persist.tail(channel, from_store)
        return True

    def persist_home(self, channel: str, home: Home) -> None:
        """A new home of a persisted channel: gate commits on the store from here on, and write
        what a copy committed before us (idempotent)."""
        if self.host.persistence is not None and self.host.config.persist_rule(channel) is not None:
            home.stored = home.log.last_seq
            self.host.persistence.write_log(channel, home.log)

    @staticmethod
    def durable_upto(home: Home, replicated_upto: int) -> int:
        """Record what the replica acknowledged; the last seq both it and the store hold."""
        if home.replicated[0] != home.replica or replicated_upto > home.replicated[1]:
            home.replicated = (home.replica, replicated_upto)
        return replicated_upto if home.stored is None else min(replicated_upto, home.stored)

    def write_through(self, channel: str, home: Home, entry: Entry) -> None:
        """Send a persisted channel's new entry to the store; commit what both copies now hold."""
        if home.stored is None or self.host.persistence is None:
            return

        def stored() -> None:
            if self.host.homes.get(channel) is not home or home.stored is None:
                return
            home.stored = max(home.stored, entry.last_seq)
            if home.replicated[0] == home.replica:
                now = self.host.now_ms
                self.home_side.complete_replicated(now, channel, home, upto=home.replicated[1])

        self.host.persistence.write(channel, home.log.epoch, entry, stored)

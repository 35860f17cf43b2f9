"""Periodic upkeep of the homes a frontend holds (mixed into HomeSide, ``homes.py``): refusing
appends a blocked home held too long, keeping idle homes' replicas alive, and retiring homes with
nothing left. Called from ``ChannelService.tick``. Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from frontend.config import FrontendConfig
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.homes import Home, _Append

log = structlog.get_logger("continuity.frontend")


def unavailable(channel: str) -> ErrorInfo:
    return ErrorInfo.of(
        ErrorCode.INTERNAL_CHANNEL, f"channel {channel} is unavailable: its home cannot be reached"
    )


class HomeUpkeep:
    config: FrontendConfig
    homes: dict[str, Home]
    _local_interest: Callable[[str], bool]

    def _replica_missing(self, home: Home) -> bool:
        raise NotImplementedError

    def _sync_replica(self, now_ms: int, channel: str, home: Home) -> None:
        raise NotImplementedError

    def _publish_window(self) -> int:
        raise NotImplementedError

    def drop_blocked(self, now_ms: int) -> None:
        """Refuse, for certain, the appends a blocked home (no replica in reach, _replica_missing)
        has held past the publish deadline and never sent to any replica: they are cut from the
        log, so they are never delivered, and their publishers get NACK 50001 (DESIGN 7: nothing
        NACKed is delivered). An append that was sent may sit in a copy, so it waits."""
        for name, home in self.homes.items():
            if not home.pending or not self._replica_missing(home):
                continue
            drop: list[_Append] = []
            for item in reversed(home.pending):
                if item.sent or now_ms - item.entry.timestamp_ms < self._publish_window():
                    break
                drop.append(item)
            if not drop:
                continue
            for _ in drop:
                home.pending.pop()
            home.log.truncate_after(drop[-1].entry.first_seq - 1)
            log.warning("channel.blocked_appends_refused", channel=name, count=len(drop))
            for item in reversed(drop):
                for waiter, _ in item.waiters:
                    waiter(None, unavailable(name))

    def keep_replicas_alive(self, now_ms: int) -> None:
        """Re-send an idle home's log to its replica once per retention window. A copy with no
        message left and no activity for two windows is forgotten (ChannelService.tick), so without
        this an idle channel that still has subscribers lost its replica's copy, and the next home
        (after a kill or a healed partition) started a new epoch: every subscriber got 90003 though
        no message was missing (chaos seed 25705, chaos:firehose between bursts)."""
        window = self.config.retention_ms
        for name, home in self.homes.items():
            if home.replica is None or not home.replica_synced or home.pending:
                continue
            if now_ms - max(home.log.last_activity_ms, home.replica_refreshed_ms) < window:
                continue
            home.replica_refreshed_ms = now_ms
            self._sync_replica(now_ms, name, home)

    def retire_idle(self, now_ms: int) -> None:
        """Forget homes with nothing retained, nobody listening, idle for two retention windows.

        Their history is gone, so a later ATTACH starts a new epoch (and old serials get 90003).
        """
        cutoff = now_ms - 2 * self.config.retention_ms
        for name in list(self.homes):
            home = self.homes[name]
            lg = home.log
            if (
                not len(lg)
                and not len(lg.presence)
                and not home.remote_subs
                and not home.pending
                and not self._local_interest(name)
                and lg.last_activity_ms < cutoff
            ):
                del self.homes[name]
                log.info("channel.retired", channel=name, epoch=lg.epoch, last_seq=lg.last_seq)

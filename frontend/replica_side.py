"""The copy side of a channel's replication: a replica taking its home's entries and whole logs.

``ChannelService`` (``channels.py``, which holds the theory of operation) builds one ``ReplicaSide`` and
hands it the requests below; it reads the service's homes and copies through ``ReplicaHost``. A copy
takes a whole log
(``ReplicaSync``) unless it is home itself or holds (or saw a client hold) more of that epoch than
the sender, which is then a stale home; it takes single entries (``Replicate``) only from the home
whose whole log it took (``ChannelLog.synced_from``), and learns with each how far that home had
committed (``ChannelLog.known_committed``). Pure: ``now_ms`` comes in; replies go to ``reply``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from frontend import peerops as O
from frontend.channel_log import ChannelLog

if TYPE_CHECKING:
    from frontend.config import FrontendConfig
    from frontend.home_records import Home
    from kernel.placement import ClusterView

log = structlog.get_logger("continuity.frontend")


class ReplicaHost(Protocol):
    """What ``ReplicaSide`` reads on its host (``ChannelService``): the homes and copies held here."""

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def view(self) -> ClusterView: ...

    @property
    def homes(self) -> dict[str, Home]: ...

    @property
    def replicas(self) -> dict[str, ChannelLog]: ...


class ReplicaSide:
    """Serving Replicate and ReplicaSync into the host's copies."""

    def __init__(self, host: ReplicaHost, release_if_done: Callable[[], None]) -> None:
        self.host = host
        self._release_if_done = release_if_done  # QuorumHomes: ask the witness now if our zone is done

    def serve_replicate(
        self, now_ms: int, src: str, op: O.Replicate, reply: Callable[[bool, Any], None]
    ) -> None:
        channel, entry = op.channel, op.entry
        copy = self.host.replicas.get(channel)
        if channel in self.host.homes:
            # We hold the home ourselves: the sender is a stale home (e.g. just back from a
            # partition). Acknowledging would let it ACK serials we number too.
            log.warning("channel.replicate_refused", channel=channel, sender=src, reason="we are home")
            reply(False, O.Refused(O.Refusal.NOT_REPLICA, "not your replica: this node is home"))
            return
        if copy is None or copy.synced_from != src or not copy.install(now_ms, entry):
            # An entry from a home whose log this copy did not take may follow on from entries that
            # are not its own (frontend.sim seed 5501: fe-b2, back from a partition, appended its 17
            # after the 15 and 16 its successor had numbered, then its whole log agreed at 17, and
            # both ACKed serials 15 and 16): it must send its whole log, judged by ReplicaSync.
            reply(False, O.Refused(O.Refusal.RESYNC, "send the whole log"))
            return
        if op.committed is not None:
            copy.learn_committed(op.committed)
        if self.host.view.zone_of(src) == self.host.config.zone:
            copy.zone_only = True  # a degraded home may commit this entry on our copy alone
        copy.advance_presence()
        reply(True, entry.last_seq)

    def serve_replica_sync(
        self, now_ms: int, src: str, op: O.ReplicaSync, reply: Callable[[bool, Any], None]
    ) -> None:
        channel = op.channel
        lg = ChannelLog.from_snapshot(
            channel,
            op.log,
            now_ms=now_ms,
            max_messages=self.host.config.channel_log_max_messages,
            retention_ms=self.host.config.retention_ms,
        )
        held = self.host.homes[channel].log if channel in self.host.homes else self.host.replicas.get(channel)
        if channel in self.host.homes or (
            held is not None
            and held.epoch == lg.epoch
            and (max(held.last_seq, held.ahead_seq) > lg.last_seq or not held.agrees_with(lg))
        ):
            # We are home, or hold (or saw a client hold) more of this epoch than the sender: it is a
            # stale home, and taking its shorter log would let it number serials given out already.
            log.warning(
                "channel.replica_sync_refused",
                channel=channel,
                sender=src,
                theirs=lg.last_seq,
                ours=None if held is None else held.last_seq,
            )
            reply(False, O.Refused(O.Refusal.STALE, "this node holds a longer copy or is home"))
            return
        lg.synced_from = src
        # A home of our own zone copies here only when it has no other zone (a degraded home): this
        # copy may hold entries no other zone has, and keeps our zone's place at the witness. The
        # sync says whether the log already holds such entries (a home's, or a copy a draining
        # frontend leaves: ``copies_to_leave``); each entry the home sends after makes it so.
        # Chaos seed 1883094701: a sync of the idle firehose from zone b's degraded home, nothing
        # committed alone, kept zone b's place for good after the heal, as nobody acquired it.
        own_zone = self.host.view.zone_of(src) == self.host.config.zone
        lg.zone_only = own_zone and bool(op.log.get("zone_only", True))
        self.host.replicas[channel] = lg
        reply(True, lg.last_seq)
        if held is not None and held.zone_only and not lg.zone_only:
            self._release_if_done()  # a copy in another zone's home's name replaced ours

"""The home side of ChannelService: holding channel logs, replicating, handing over.

See ``channels.py`` for the theory of operation. ``ChannelService`` builds one ``HomeSide``, which
keeps the acquisitions under way and the remote subscribers of homes given up, and works on the
service's homes and copies through ``HomesHost``. A home numbers a channel's messages (``append``),
waits for its replica's acknowledgement (``_replicate``/``sync_replica``), then fans out and ACKs
in order (``complete_replicated``). Homes are acquired by pulling the best surviving copy from
every live frontend (``_acquire``), handed over only to the node the holder's own map names home
(``serve_log_fetch``), and demoted after a healed partition (``demote``). Pure: ``now_ms`` comes
in; peers are reached through ``Bus``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from frontend import peerops as O
from frontend.channel_log import ChannelLog, Entry, new_epoch, parse_serial
from frontend.config import FrontendConfig
from frontend.home_persist import PersistedHomes
from frontend.home_quorum import QuorumHomes, no_quorum, replica_missing
from frontend.home_records import OPERATION_DEADLINE_MS, RPC_TIMEOUT_S, Home, Stream, _Append, unavailable
from frontend.idempotency import screen, wait_on
from frontend.metrics import Metrics
from kernel.errors import ErrorInfo
from kernel.placement import ClusterView, Placement

if TYPE_CHECKING:
    from frontend.bus import Bus
    from frontend.idempotency import PublishDone

log = structlog.get_logger("continuity.frontend")
SETTLE_WAIT_MS = 2_000  # the longest an attach waits for a new home's entries in doubt (Home.settling)

__all__ = ["OPERATION_DEADLINE_MS", "RPC_TIMEOUT_S", "Home", "HomeSide", "Stream", "unavailable"]


class HomesHost(Protocol):
    """What ``HomeSide`` reads and calls on its host (``ChannelService``)."""

    node_id: str
    config: FrontendConfig
    metrics: Metrics
    bus: Bus | None
    ready: bool
    view: ClusterView
    placement: Placement
    homes: dict[str, Home]
    replicas: dict[str, ChannelLog]
    streams: dict[str, Stream]
    now_ms: int
    persisted: PersistedHomes
    zone_quorum: QuorumHomes
    _fan_out: Callable[[int, str, Entry, str | None], None]
    _local_interest: Callable[[str], bool]
    on_change: Callable[[], None]

    def home_of(self, channel: str) -> str: ...

    def _follow(self, name: str, epoch: str, cursor: int) -> None: ...

    def _retry(
        self, now_ms: int, deadline_ms: int | None, again: Callable[[int], None], give_up: Callable[[], None]
    ) -> None: ...


class HomeSide:
    """The homes this frontend holds: acquiring, numbering, replicating, handing over, demoting."""

    def __init__(self, host: HomesHost, rng: random.Random) -> None:
        self.host = host
        self._rng = rng  # new epochs' names
        self.acquiring: dict[str, list[Callable[[bool], None]]] = {}  # channel -> waiters for its home
        # Remote subscribers of homes we gave up without a hand-over (see ``demote``).
        self.former_subs: dict[str, set[str]] = {}

    def demote(self, name: str) -> None:
        """Stop being home of ``name``: keep its durable part as a copy; re-route publishes in flight."""
        home = self.host.homes.pop(name)
        home.log.truncate_after(max(home.committed, home.in_doubt))  # in doubt: maybe ACKed before
        # A copy of an idle channel (empty once its messages expired) must outlive the next sweep of
        # idle copies: it holds the channel's position, which the next home continues from.
        home.log.last_activity_ms = max(home.log.last_activity_ms, self.host.now_ms)
        self.host.replicas[name] = home.log
        self.former_subs[name] = set(home.remote_subs)
        self.host.on_change()
        for item in home.pending:
            for _, abandon in item.waiters:
                abandon()
        if self.host._local_interest(name):
            # Our own subscribers were served by this home: they now follow whoever holds it.
            self.host._follow(name, home.log.epoch, home.committed)

    def step_down(self, channel: str, why: str, serial: object = None) -> None:
        """Evidence that our home of ``channel`` is stale (a peer holds more of its epoch than we
        committed, or a client holds ``serial`` of a newer epoch): stop serving it; the next request
        re-acquires from the best copy in the cluster."""
        home = self.host.homes.get(channel)
        if home is not None:
            log.warning("channel.home_stale", channel=channel, why=why)
            home.log.note_serial(serial)
            self.demote(channel)

    def note_serials(self, channel: str, *serials: str | None) -> None:
        """Serials a client or a peer's stream holds: our copy of ``channel`` remembers any that shows
        the channel went on past it (``ChannelLog.note_serial``), and tells the next home so."""
        copy = self.host.replicas.get(channel)
        if copy is not None:
            for serial in serials:
                copy.note_serial(serial)

    def with_home(self, now_ms: int, channel: str, then: Callable[[bool], None]) -> None:
        if channel in self.host.homes:
            then(True)
        elif channel in self.acquiring:
            self.acquiring[channel].append(then)
        else:
            self.acquiring[channel] = [then]
            self._acquire(now_ms, channel)

    def with_settled_home(self, now_ms: int, channel: str, then: Callable[[bool], None]) -> None:
        """``_with_home`` for an attach: it waits while the home is ``settling``, at most
        ``SETTLE_WAIT_MS`` (then it is served as the home stands)."""
        host = self.host
        deadline = now_ms + SETTLE_WAIT_MS

        def ready(ok: bool) -> None:
            home = host.homes.get(channel)
            if not (ok and home is not None and home.settling):
                then(ok)
                return
            again = lambda t: self.with_home(t, channel, ready)  # noqa: E731
            host._retry(host.now_ms, deadline, again, lambda: self.with_home(host.now_ms, channel, then))

        self.with_home(now_ms, channel, ready)

    def new_log(
        self, channel: str, now_ms: int, *, epoch: str | None = None, start_seq: int = 0,
        replaces: ChannelLog | None = None,
    ) -> ChannelLog:
        cfg, epoch = self.host.config, epoch or new_epoch(now_ms, self._rng)
        lg = ChannelLog(channel, epoch, max_messages=cfg.channel_log_max_messages,
                        retention_ms=cfg.retention_ms, start_seq=start_seq)  # fmt: skip
        lg.last_activity_ms = lg.created_ms = now_ms
        if replaces is not None:  # a copy that may miss entries: keep the serials its publishes got
            lg.inherit_publishes(replaces)
        return lg

    def _acquire(self, now_ms: int, channel: str) -> None:
        """Become the channel's home: gather the best surviving copy, or start a new epoch."""
        host = self.host
        defer = host.zone_quorum.defer_new_epoch
        peers = [p.node_id for p in host.view.frontends() if p.alive and p.node_id != host.node_id]
        if (wait := host.zone_quorum.acquire_wait()) is not None:
            defer(channel, wait)
            return
        if host.bus is None or not peers:
            own = host.replicas.get(channel)
            if host.bus is not None and len(host.view.frontends()) > 1:
                if own is None:
                    defer(channel, "no other frontend in reach")  # any may hold a copy
                    return
                if host.placement.other_zone_known(host.node_id):
                    # Alone in a map that knows the other zone: our copy may be stale, its home merely
                    # out of sight (chaos seed 591600106: a false death made a second, stale home).
                    defer(channel, "alone in the map: our copy may be stale")
                    return
            host.replicas.pop(channel, None)
            gone = own if own is not None and own.superseded() else None
            if gone is not None:
                own = None  # a client already holds a newer epoch than this copy's: start another
            elif own is not None and host.zone_quorum.stale_after_loss(own, None):
                own = self.new_log(channel, now_ms, replaces=own)  # it may miss entries a lost zone ACKed
            source = "fresh" if own is None else "replica"
            self.become_home(now_ms, channel, own, set(), source, replaces=gone)
            return
        replies: dict[str, Any] = {}
        refused = []

        def on_reply(peer: str, ok: bool, result: Any) -> None:
            replies[peer] = result if ok else None
            if ok and isinstance(result, dict) and result.get("home"):
                refused.append(result["home"])
            if len(replies) < len(peers):
                return
            silent = [p for p, r in replies.items() if r is None and host.view.alive(p)]
            asked = {*replies, host.node_id}
            silent += [p.node_id for p in host.view.frontends() if p.alive and p.node_id not in asked]
            if refused or silent or host.home_of(channel) != host.node_id:
                # A live peer that did not answer (or came into sight since we asked: frontend.sim
                # --witness seed 306) may still be home or hold the best copy: never guess.
                defer(channel, "claimed or silent", claimed_by=refused, silent=silent)
                return
            best: ChannelLog | None = host.replicas.pop(channel, None)
            replaced = None
            copies = [] if best is None else [best]
            subs: set[str] = set()
            source = "replica" if best is not None else "fresh"
            subs |= self.former_subs.pop(channel, set())
            for peer_id, r in replies.items():
                if not isinstance(r, dict):
                    continue
                subs |= set(r.get("subs") or ())
                if r.get("log") is None:
                    continue
                cfg = host.config
                lg = ChannelLog.from_snapshot(channel, r["log"], now_ms=host.now_ms,
                                              max_messages=cfg.channel_log_max_messages,
                                              retention_ms=cfg.retention_ms)  # fmt: skip
                if isinstance(r.get("made_ms"), int):
                    lg.created_ms = min(lg.created_ms, r["made_ms"])  # when the peer's copy was made
                copies.append(lg)
                if best is None or r.get("relinquished") or (lg.supersedes(best) and source != "handover"):
                    best, source = lg, ("handover" if r.get("relinquished") else f"copy:{peer_id}")
            for lg in copies:
                if best is not None and lg is not best:
                    best.learn_from(lg)
            if best is not None and best.superseded():
                # A client holds a serial of a newer epoch than every copy's, or of this epoch past
                # the best copy's end (that home and its copies are gone): continuing it would move
                # that client backwards, or give its serials out again; a new epoch announces the gap.
                best, source, replaced = None, "superseded", best
            answers = [r for r in replies.values() if isinstance(r, dict)]
            handed = any(r.get("relinquished") for r in answers)
            if not handed and host.zone_quorum.stale_after_loss(best, [r.get("lost_since") for r in answers]):
                # A zone lost entries it ACKed alone (home_quorum): no copy is known complete.
                best, source = self.new_log(channel, host.now_ms, replaces=best), "zone_data_lost"
            self.become_home(host.now_ms, channel, best, subs, source, replaces=replaced)

        def replier(peer: str) -> Callable[[bool, Any], None]:
            return lambda ok, res: on_reply(peer, ok, res)

        for peer in peers:
            host.bus.request(peer, O.LogFetch(channel=channel), replier(peer), RPC_TIMEOUT_S)

    def become_home(
        self, now_ms: int, channel: str, lg: ChannelLog | None, subs: set[str], source: str,
        *, store_checked: bool = False, replaces: ChannelLog | None = None,
    ) -> None:  # fmt: skip
        if lg is None and not store_checked and self.host.persisted.acquire_from_store(channel, subs, source):
            return  # a persisted channel asks its store where its epoch stands first
        zq = self.host.zone_quorum
        if lg is None and (why := zq.new_epoch_wait()) is not None:
            # No copy in reach, and frontends that may hold one are out of sight (the other zone,
            # or the rest of a cut that is healing): a new epoch here would hide the channel's
            # history from our subscribers (90003) and, newest, win over the copies when they are
            # back (frontend.sim seed 4; chaos seeds 12313, 1516076113). Wait.
            self.host.zone_quorum.defer_new_epoch(channel, why)
            return
        if lg is None:
            lg = self.new_log(channel, now_ms, replaces=replaces)
            if source != "fresh":
                source = "lost"
        state = self.host.zone_quorum.quorum()
        replica, blocked, degraded = self.host.zone_quorum.choose_replica(channel, state)
        committed = min(lg.known_committed, lg.last_seq)
        home = self.host.homes[channel] = Home(
            log=lg,
            remote_subs=subs - {self.host.node_id},
            replica=replica,
            replica_synced=False,
            committed=committed,
            in_doubt=lg.last_seq if lg.last_seq > committed else 0,
            blocked=blocked,
            degraded=degraded,
        )
        if degraded:
            log.warning("channel.replica_degraded", channel=channel, replica=replica, detail=state.describe())
        self.host.metrics.replication_degraded.set(1 if self.host.zone_quorum.replication_degraded() else 0)
        self.host.persisted.persist_home(channel, home)
        log.info(
            "channel.home_acquired", channel=channel, epoch=lg.epoch, last_seq=lg.last_seq, source=source
        )
        self.sync_replica(now_ms, channel, home)
        for cb in self.acquiring.pop(channel, []):
            # An earlier waiter may have made us step down (frontend/sim.py found a KeyError here).
            cb(self.host.homes.get(channel) is home)

    def sync_replica(self, now_ms: int, channel: str, home: Home) -> None:
        host, replica = self.host, home.replica
        if replica_missing(home):
            # Every frontend of the other zone is out of sight. Acknowledging alone here would let
            # both sides of a zone partition number the same serials: wait for the map to change.
            home.replica_synced = False
            log.warning("channel.replica_unavailable", channel=channel, pending=len(home.pending))
            return
        if replica is None or host.bus is None:
            home.replica_synced = True
            self.complete_replicated(now_ms, channel, home, upto=home.log.last_seq)
            return

        def on_reply(ok: bool, result: Any) -> None:
            if host.homes.get(channel) is not home or home.replica != replica:
                return
            if ok:
                home.replica_synced = True
                synced = int(result)
                host.zone_quorum.synced_across_zones(channel, home, synced)
                log.info("channel.replica_synced", channel=channel, replica=replica, last_seq=synced,
                         pending=len(home.pending))  # fmt: skip
                self.complete_replicated(host.now_ms, channel, home, upto=synced)
                self._send_tail(channel, home)
                # Appends made while the snapshot travelled follow it, in order.
                for item in list(home.pending):
                    if item.entry.last_seq > synced:
                        self._replicate(channel, home, item)
            elif isinstance(result, O.Refused) and result.code is O.Refusal.STALE:
                self.step_down(channel, f"replica {replica} refused our log: {result}")
            else:
                log.info("channel.replica_sync_failed", channel=channel, replica=replica, reason=str(result))
                host._retry(host.now_ms, None, lambda t: self.sync_replica(t, channel, home), lambda: None)

        for item in home.pending:
            item.sent = True
        alone = home.log.zone_only or (home.degraded and home.log.last_seq > home.committed)  # or may
        snapshot = {**home.log.snapshot(), "zone_only": alone}
        host.bus.request(replica, O.ReplicaSync(channel=channel, log=snapshot), on_reply, RPC_TIMEOUT_S)

    def _send_tail(self, channel: str, home: Home) -> None:
        bus = self.host.bus
        tail = home.tail_to_send() if bus is not None and home.remote_subs else None
        if bus is not None and tail is not None:
            for sub in sorted(home.remote_subs):
                bus.push(sub, O.Deliver(channel=channel, entry=tail))

    def append(self, now_ms: int, pub: O.Publish, done: PublishDone, abandon: Callable[[], None]) -> None:
        channel, connection_id, msg_serial = pub.channel, pub.connection_id, pub.msg_serial
        home = self.host.homes[channel]
        lg = home.log
        prior = lg.lookup(connection_id, msg_serial)
        if prior is not None:
            self.host.metrics.duplicates.inc()
            for pending in home.pending:
                if pending.entry.publisher == connection_id and pending.entry.msg_serial == msg_serial:
                    pending.waiters.append((done, abandon))  # still replicating: answer when it is
                    return
            epoch, seq = parse_serial(prior[-1]) or ("", 0)  # another epoch's: kept by inherit_publishes
            if not home.replica_synced and epoch == lg.epoch and seq > home.confirmed:
                # No replica has confirmed this log yet: it may be a stale copy whose serials were
                # given out again elsewhere (frontend/sim.py seed 1166 saw serial 28 ACKed to two
                # publishes, one of them from such a copy's dedupe record). Answer once it is synced.
                # A serial our replica confirmed while we held the home is answered at once: during
                # a zone loss the re-sends of a publisher whose frontend died waited until this home
                # was lost too, and the next epoch numbered them again (seed 5170: duplicated).
                abandon()
                return
            done(prior, None)
            return
        if replica_missing(home) and self.host.zone_quorum.minority_known(now_ms):
            self.host.metrics.publishes_refused_no_quorum.inc()  # refused before it is even numbered
            done(None, no_quorum(channel, self.host.zone_quorum.quorum(now_ms)))
            return
        # Client-supplied ids seen within the dedupe window (frontend.idempotency): answered, not appended.
        screened = screen(lg.ids, pub.messages, done, lambda seq, cb: wait_on(home.pending, seq, cb, abandon))
        if screened.duplicate:
            self.host.metrics.duplicates.inc()
        if screened.fresh is None:
            return
        done = screened.done
        serials, entry = lg.append(
            now_ms,
            [dict(m) for m in screened.fresh],
            dict(pub.envelope),
            publisher=connection_id,
            msg_serial=msg_serial,
        )
        item = _Append(entry, serials, [(done, abandon)], queued_ms=now_ms)
        home.pending.append(item)
        self.host.persisted.write_through(channel, home, entry)
        if replica_missing(home):
            return  # acknowledged once a replica in another zone holds it (_sync_replica)
        if home.replica is None or self.host.bus is None:
            self.complete_replicated(now_ms, channel, home, upto=entry.last_seq)
            return
        if home.replica_synced:
            self._replicate(channel, home, item)
        # else: the sync in flight (or retried) is followed by this entry once it lands

    def _replicate(self, channel: str, home: Home, item: _Append) -> None:
        replica = home.replica
        assert replica is not None and self.host.bus is not None
        entry = item.entry
        item.sent = True

        def on_reply(ok: bool, result: Any) -> None:
            if self.host.homes.get(channel) is not home or home.replica != replica:
                return
            if ok:
                self.complete_replicated(self.host.now_ms, channel, home, upto=entry.last_seq)
            elif home.replica_synced:
                home.replica_synced = False
                self.sync_replica(self.host.now_ms, channel, home)

        op = O.Replicate(channel=channel, entry=entry, committed=home.committed)
        self.host.bus.request(replica, op, on_reply, RPC_TIMEOUT_S)

    def complete_replicated(self, now_ms: int, channel: str, home: Home, *, upto: int) -> None:
        """Fan out and ACK, in order, every pending append the replica now holds."""
        if not self.host.zone_quorum.quorum_allows(home):
            return  # a copy inside our zone counts only while we hold the majority of zones
        upto = PersistedHomes.durable_upto(home, upto)
        home.confirmed = max(home.confirmed, upto)
        if home.in_doubt > home.committed:
            self._commit_in_doubt(now_ms, channel, home, min(upto, home.in_doubt))
        while home.pending and home.pending[0].entry.last_seq <= upto:
            item = home.pending.popleft()
            entry = item.entry
            home.log.zone_only = home.log.zone_only or home.degraded
            home.committed = entry.last_seq
            home.log.learn_committed(home.committed)
            home.log.advance_presence(home.committed)
            self.host._fan_out(now_ms, channel, entry, entry.publisher)
            if self.host.bus is not None:
                for sub in sorted(home.remote_subs):
                    self.host.bus.push(sub, O.Deliver(channel=channel, entry=entry))
            for waiter, _ in item.waiters:
                waiter(item.serials, None)
        if not home.pending:
            waiting, home.relinquish = home.relinquish, []
            for cb in waiting:
                cb()

    def _commit_in_doubt(self, now_ms: int, channel: str, home: Home, upto: int) -> None:
        """Commit, in order, the acquired entries in doubt (``Home.in_doubt``) up to seq ``upto``."""
        if upto <= home.committed:
            return
        entries = home.log.replay_after(home.log.serial(home.committed), upto) or []
        home.committed = upto
        home.log.learn_committed(upto)
        for entry in entries:
            self.host._fan_out(now_ms, channel, entry, entry.publisher)
            if self.host.bus is not None:
                for sub in sorted(home.remote_subs):
                    self.host.bus.push(sub, O.Deliver(channel=channel, entry=entry))

    def seen(self, now_ms: int, channel: str, home: Home, *serials: str | None) -> None:
        """Serials a client or a peer's stream holds: an entry in doubt that one shows was seen
        (its previous home committed it) is committed here at once, with all before it."""
        for serial in serials:
            parsed = parse_serial(serial) if serial else None
            if parsed is not None and parsed[0] == home.log.epoch and parsed[1] <= home.in_doubt:
                self._commit_in_doubt(now_ms, channel, home, parsed[1])

    def serve_attach(self, now_ms: int, src: str, op: O.Attach, reply: Callable[[bool, Any], None]) -> None:
        channel = op.channel
        self.note_serials(channel, op.from_serial, op.stream_from)
        if self.host.home_of(channel) != self.host.node_id:
            reply(False, O.Refused(O.Refusal.NOT_HOME, f"not home for {channel}"))
            return

        def then(ok: bool) -> None:
            if not ok:
                reply(False, O.Refused(O.Refusal.ACQUIRING, f"{channel} is being acquired elsewhere"))
                return
            home = self.host.homes[channel]
            self.seen(self.host.now_ms, channel, home, op.from_serial, op.stream_from)
            if home.behind(op.from_serial) or home.behind(op.stream_from):
                reply(False, O.Refused(O.Refusal.BEHIND, f"home of {channel} is behind the serial asked for"))
                why = f"{src} asked past our committed {home.committed}"
                self.step_down(
                    channel, why, op.from_serial if home.behind(op.from_serial) else op.stream_from
                )
                return
            if op.subscribe:
                home.remote_subs.add(src)
            frm = op.from_serial
            replay = home.log.replay_after(frm, home.committed) if frm else None
            stream_from = op.stream_from
            stream = home.log.replay_after(stream_from, home.committed) if stream_from else None
            reply(
                True,
                {
                    "last_serial": home.log.serial(home.committed),
                    "entries": None if replay is None else [e.to_wire() for e in replay],
                    "stream_entries": None if stream is None else [e.to_wire() for e in stream],
                    "presence": home.log.presence.to_wire() or None,
                },
            )

        self.with_settled_home(now_ms, channel, then)

    def serve_publish(
        self, now_ms: int, src: str, pub: O.Publish, reply: Callable[[bool, Any], None]
    ) -> None:
        channel = pub.channel
        if self.host.home_of(channel) != self.host.node_id:
            reply(False, O.Refused(O.Refusal.NOT_HOME, f"not home for {channel}"))
            return

        def done(serials: list[str] | None, error: ErrorInfo | None) -> None:
            if serials is not None:
                reply(True, O.PublishReply(O.Outcome.NUMBERED, tuple(serials)).to_wire())
            else:  # refused for certain (never numbered, or cut from the log): relay the NACK
                info = error or unavailable(channel)
                reply(True, O.PublishReply(O.Outcome.REFUSED, error=info).to_wire())

        def then(ok: bool) -> None:
            if not ok:
                reply(False, O.Refused(O.Refusal.ACQUIRING, f"{channel} is being acquired elsewhere"))
                return
            minority = self.host.zone_quorum.minority_known(self.host.now_ms)
            if (refusal := self.host.homes[channel].turns_away(pub, minority)) is not None:
                reply(False, refusal)  # not taken in: certainly not numbered (the sender retries)
                return
            self.append(
                self.host.now_ms,
                pub,
                done,
                lambda: reply(False, O.Refused(O.Refusal.CHANGED_HOME, f"{channel} changed home; retry")),
            )

        self.with_home(now_ms, channel, then)

    def serve_log_fetch(
        self, now_ms: int, src: str, channel: str, reply: Callable[[bool, Any], None]
    ) -> None:
        home = self.host.homes.get(channel)
        if home is None:
            copy = self.host.replicas.get(channel)
            subs = set(self.former_subs.get(channel, ()))
            if channel in self.host.streams or (copy is not None and self.host._local_interest(channel)):
                subs.add(self.host.node_id)
            if self.host.zone_quorum.withhold_log_fetch(reply):
                return  # restarted, not yet told by the witness whether our zone lost data (home_quorum)
            snapshot = copy.snapshot() if copy is not None else None
            made = copy.created_ms if copy is not None else None  # a stale copy is judged by its age
            lost = self.host.zone_quorum.lost_since()
            reply(True, {"log": snapshot, "subs": sorted(subs), "lost_since": lost, "made_ms": made})
            return
        if self.host.home_of(channel) != src:
            reply(True, {"home": self.host.node_id})  # my map still says I am home: the asker must wait
            return

        def hand_over() -> None:
            if self.host.homes.get(channel) is not home:
                reply(True, {"log": None})
                return
            del self.host.homes[channel]
            self.host.on_change()
            lg = home.log
            if self.host.placement.channel_replica(channel) == self.host.node_id:
                self.host.replicas[channel] = lg
            subs = set(home.remote_subs)
            if self.host._local_interest(channel):
                # Our own subscribers now follow the new home like any other frontend's.
                self.host.streams[channel] = Stream(home=src, epoch=lg.epoch, cursor=home.committed)
                subs.add(self.host.node_id)
            log.info("channel.handed_over", channel=channel, to=src, last_seq=lg.last_seq)
            # A blocked home's log is no fresher than the copy it was acquired from (it committed
            # nothing since): the acquirer judges it like a copy (seed 737).
            made = lg.created_ms if home.blocked else None
            if home.blocked:  # what it never committed is not handed on as if it were (seed 1371)
                lg.truncate_after(home.committed)
            answer = {"log": lg.snapshot(), "relinquished": made is None, "made_ms": made}
            reply(True, {**answer, "subs": sorted(subs)})
            for item in home.pending:  # retried at the new home (deduplicated there if it holds them)
                for _, abandon in item.waiters:
                    abandon()

        if home.pending and not replica_missing(home):
            home.relinquish.append(hand_over)  # replication in flight settles first
        else:
            # A blocked home (no replica in reach) never settles: waiting would keep the log until
            # the drain ends and the process exits with it (seed 1510: zone b lost, fe-a2 drained;
            # the next epoch numbered the re-sent publishes again). Hand it over as it is.
            hand_over()

    def keep_replicas_alive(self, now_ms: int) -> None:
        """Re-send an idle home's log to its replica once per retention window. A copy with no
        message left and no activity for two windows is forgotten (ChannelService.tick), so without
        this an idle channel that still has subscribers lost its replica's copy, and the next home
        (after a kill or a healed partition) started a new epoch: every subscriber got 90003 though
        no message was missing (chaos seed 25705, chaos:firehose between bursts)."""
        window = self.host.config.retention_ms
        for name, home in self.host.homes.items():
            if home.replica is None or not home.replica_synced or home.pending:
                continue
            if now_ms - max(home.log.last_activity_ms, home.replica_refreshed_ms) < window:
                continue
            home.replica_refreshed_ms = now_ms
            self.sync_replica(now_ms, name, home)

    def retire_idle(self, now_ms: int) -> None:
        """Forget homes with nothing retained, nobody listening, idle for two retention windows: their
        history is gone, so a later ATTACH starts a new epoch (and old serials get 90003)."""
        cutoff = now_ms - 2 * self.host.config.retention_ms
        for name in [n for n, home in self.host.homes.items() if home.idle_since(cutoff)]:
            if not self.host._local_interest(name):
                lg = self.host.homes.pop(name).log
                log.info("channel.retired", channel=name, epoch=lg.epoch, last_seq=lg.last_seq)

    def handle_take(self, now_ms: int, channel: str) -> None:
        """A draining home asks us to acquire ``channel`` now rather than on first use."""
        if self.host.home_of(channel) == self.host.node_id:
            self.with_home(now_ms, channel, lambda ok: None)

"""ChannelService: channel homes, replicas and per-frontend streams across the cluster.

Theory of operation
-------------------
Every channel has one *home* (placement's first active frontend for it), which
holds the channel's ChannelLog and alone numbers its messages, and one
*replica* in another zone that holds a copy. A publish is appended at the
home, replicated to the replica **and acknowledged by it**, and only then
fanned out and ACKed (DESIGN invariant 1): whatever a subscriber has seen, and
whatever was ACKed, survives the loss of one frontend.

A frontend whose clients subscribe to a channel homed elsewhere keeps a
*stream* for it: it is registered at the home, receives each entry once
(``deliver`` pushes) and fans it out locally. The stream's cursor (the last
seq applied) makes delivery exactly-once and in order even across home
changes: an entry at or below the cursor is dropped, one that skips ahead
triggers a re-attach from the cursor, and a re-attach after a home change
replays exactly the missing entries from the new home.

Home changes are pulled, never pushed: a frontend that placement names home
for a channel it does not hold *acquires* it by asking every live frontend for
its copy (``log_fetch``). The old home hands over only to a node that its own
map also names home (so two homes never coexist once maps agree), after its
in-flight appends are replicated. The copy with the most history wins; the
epoch continues. Only when no copy survives does a new epoch start, and
subscribers are told (90003).

Standalone (no peers) every channel is homed here and nothing is replicated.
All callbacks run synchronously; with no peers they run before the call returns.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from frontend import peerops as O
from frontend.bus import Bus
from frontend.channel_log import ChannelLog, Entry, epoch_born, parse_serial
from frontend.config import FrontendConfig
from frontend.home_persist import PersistedHomes
from frontend.home_quorum import QuorumHomes
from frontend.home_records import Retries
from frontend.homes import (
    OPERATION_DEADLINE_MS,
    RPC_TIMEOUT_S,
    Home,
    HomeSide,
    Stream,
    unavailable,
)
from frontend.idempotency import PublishDone
from frontend.metrics import Metrics
from frontend.persistence import Persistence
from frontend.publishing import RETRY_MS, Publisher
from frontend.replica_side import ReplicaSide
from kernel.errors import ErrorInfo
from kernel.placement import ClusterView, Peer, Placement
from kernel.protocol import Message
from kernel.quorum import QuorumState

log = structlog.get_logger("continuity.frontend")

@dataclass(frozen=True, slots=True)
class AttachResult:
    last_serial: str  # the channel's serial when the attach took effect
    replay: list[Entry] | None  # entries after the requested serial; None if continuity is lost
    error: ErrorInfo | None = None  # set when the attach could not be served at all
    presence: list[Message] | None = None  # the presence set at ``last_serial`` (presence_set.py)


AttachDone = Callable[[AttachResult], None]
FanOut = Callable[[int, str, Entry, str | None], None]
# (now, channel, serial, the presence set at that serial): the history is gone (90003)
Lost = Callable[[int, str, str, list[Message] | None, str], None]  # ..., why (for the log)


class ChannelService:
    def __init__(
        self,
        node_id: str,
        config: FrontendConfig,
        *,
        rng: random.Random,
        metrics: Metrics,
        fan_out: FanOut,
        lost: Lost,
        local_interest: Callable[[str], bool],
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.metrics = metrics
        self._fan_out = fan_out
        self._lost = lost
        self._local_interest = local_interest
        self.on_change: Callable[[], None] = lambda: None
        # The witness should be asked now (not at the next renewal): our zone's place there is done.
        self.witness_poke: Callable[[], None] = lambda: None
        # The channel serials our local subscribers hold (None: not known), set by the node.
        self.local_serials: Callable[[str], list[str | None]] = lambda channel: []
        self.bus: Bus | None = None
        self.persistence: Persistence | None = None  # set by the driver when a store is configured
        # False until the cluster map is complete enough to trust (a node that just joined may not
        # know of a channel's current home yet, and must not become home beside it).
        self.ready = True
        self.view = ClusterView({node_id: Peer(node_id=node_id, role="frontend", zone=config.zone)})
        self.placement = Placement(self.view)
        self._gossip_view = self.view
        self.homes: dict[str, Home] = {}
        self.replicas: dict[str, ChannelLog] = {}
        self.streams: dict[str, Stream] = {}
        self._seen_dead: set[str] = set()
        # Peers whose port refused a connect, treated as dead until a link connects again.
        self.down: set[str] = set()
        # Peers whose port refused us since gossip last showed them alive: their process is gone
        # (a silent peer, cut off, may live on). A takeover from such an owner's copy leaves no
        # attempt of its in flight (``takeover.py``).
        self.refused: set[str] = set()
        self._retries = Retries()
        self.now_ms = 0
        home_side = self.home_side = HomeSide(self, rng)  # acquiring, numbering, replicating homes
        zone_quorum = self.zone_quorum = QuorumHomes(self, rng, home_side)  # the zone votes
        # serves Replicate and ReplicaSync into our copies
        self.replica_side = ReplicaSide(self, zone_quorum.release_if_done)
        self.persisted = PersistedHomes(self, home_side)  # write-through and store-continued epochs
        self.publisher = Publisher(self, self._retries, home_side)  # our clients' publishes in flight

    # ------------------------------------------------------------------
    # The zone quorum (``home_quorum.py``), as the node, the witness client and the publisher see it

    @property
    def boot(self) -> str:
        """This process's boot id, sent to the witness (a restarted holder lost what it held alone)."""
        return self.zone_quorum.boot

    def quorum(self, now_ms: int | None = None) -> QuorumState:
        return self.zone_quorum.quorum(now_ms)

    def minority_known(self, now_ms: int | None = None) -> bool:
        return self.zone_quorum.minority_known(now_ms)

    def write_available(self) -> bool:
        return self.zone_quorum.write_available()

    def replication_degraded(self) -> bool:
        return self.zone_quorum.replication_degraded()

    def write_status(self) -> dict[str, object]:
        return self.zone_quorum.write_status()

    def witness_request(self, now_ms: int) -> tuple[list[str], bool, bool, bool] | None:
        return self.zone_quorum.witness_request(now_ms)

    def grant(
        self, now_ms: int, router: str, sent_ms: int, granted: bool, need: bool, holder: str | None,
        *, lost: bool = False, lost_age_ms: int = 0,
    ) -> None:
        """A witness router answered (``QuorumHomes.grant``)."""
        self.now_ms = now_ms
        self.zone_quorum.grant(
            now_ms, router, sent_ms, granted, need, holder, lost=lost, lost_age_ms=lost_age_ms
        )

    def witness_unanswered(self, need: bool) -> None:
        self.zone_quorum.witness_unanswered(need)

    # ------------------------------------------------------------------
    # Cluster map

    def home_of(self, channel: str) -> str:
        return self.placement.channel_home(channel) or self.node_id

    def set_view(self, now_ms: int, view: ClusterView) -> None:
        """Adopt a new cluster map: re-point streams, re-sync replicas, re-validate homes after a heal."""
        fronts = view.frontends()
        revived = {p.node_id for p in fronts if p.alive and p.node_id in self._seen_dead}
        self._seen_dead = (self._seen_dead - revived) | {p.node_id for p in fronts if not p.alive}
        self._gossip_view = view
        self.down = {n for n in self.down if view.alive(n)}
        self.refused = {n for n in self.refused if n in self.down or not view.alive(n)}
        self._apply_view(now_ms, revived)

    def mark_down(self, now_ms: int, peer: str) -> None:
        """A peer's port refused us: its process is gone. Place as if gossip said so (DESIGN 4.2)."""
        if peer not in self.down and self._gossip_view.alive(peer):
            log.info("channel.peer_down", peer=peer)
            self.down.add(peer)
            self.refused.add(peer)
            self._apply_view(now_ms, set())

    def mark_up(self, now_ms: int, peer: str) -> None:
        """A link to a peer we had marked down connected again."""
        if peer in self.down:
            log.info("channel.peer_up", peer=peer)
            self.down.discard(peer)
            self.refused.discard(peer)
            self._apply_view(now_ms, set())

    def _apply_view(self, now_ms: int, revived: set[str]) -> None:
        self.now_ms = now_ms
        view = self._gossip_view
        for peer in self.down:
            info = view.peers.get(peer)
            if info is not None:
                view = view.with_peer(dataclasses.replace(info, alive=False))
        self.view = view
        self.placement = Placement(view)
        self.zone_quorum.remember_zones(view)  # first: what it notes judges the acquisitions below
        if revived and self.homes:
            # A member we saw dead is back: a partition healed (or a map lagged). Homes either side
            # held meanwhile may have been superseded, so none is trusted: each becomes a copy and
            # the next request re-acquires from the best copy in the cluster.
            log.info("channel.homes_revalidated", revived=sorted(revived), homes=len(self.homes))
            for name in list(self.homes):
                self.home_side.demote(name)
        if revived:
            # Our streams re-register with whichever node holds each home now, and catch up.
            for name, stream in list(self.streams.items()):
                if not stream.resyncing:
                    self._resync(now_ms, name, stream)
        for name, stream in list(self.streams.items()):
            home = self.home_of(name)
            if home != stream.home:
                log.info("channel.home_moved", channel=name, old=stream.home, new=home)
                stream.home = home
                if home == self.node_id:
                    # Our own clients' stream is now served by the log we will hold.
                    self._resubscribe_local(now_ms, name, stream)
                else:
                    self._resync(now_ms, name, stream)
        self.zone_quorum.reassess(now_ms)
        # The map may be what tells us we are the minority (not the next sweep).
        self.zone_quorum.drop_blocked(now_ms)

    def _follow(self, name: str, epoch: str, cursor: int) -> None:
        """Start a stream for our local subscribers of ``name`` from ``cursor``, at its current home."""
        stream = self.streams[name] = Stream(home=self.home_of(name), epoch=epoch, cursor=cursor)
        if stream.home == self.node_id:
            self._resubscribe_local(self.now_ms, name, stream)
        else:
            self._resync(self.now_ms, name, stream)

    def _resubscribe_local(self, now_ms: int, name: str, stream: Stream) -> None:
        """The home moved here: replay to our subscribers what our stream had not applied. If the
        home moved on again while we attached, keep following it from where we got to."""
        del self.streams[name]
        cursor = f"{stream.epoch}:{stream.cursor}" if stream.epoch else None

        def done(res: AttachResult) -> None:
            if res.error is not None:
                # Not served in time: our subscribers still need it; start over from the cursor.
                if name not in self.streams and self._local_interest(name):
                    self._follow(name, stream.epoch or "", stream.cursor)
                return
            at = parse_serial(res.last_serial)
            if res.replay is None:
                if cursor is not None:
                    self._lost(self.now_ms, name, res.last_serial, res.presence, f"no replay from {cursor}")
            else:
                for e in res.replay:
                    self._fan_out(self.now_ms, name, e, None)
                if res.replay and at is not None:
                    at = (at[0], res.replay[-1].last_seq)
            if (
                at is not None
                and self.home_of(name) != self.node_id
                and name not in self.streams
                and self._local_interest(name)
            ):
                # Answered by a remote home (the map moved on): that attach did not subscribe us.
                self._follow(name, *at)

        self.attach(now_ms, name, cursor, done, subscribe=False)

    # ------------------------------------------------------------------
    # Operations from this node's clients

    def attach(
        self,
        now_ms: int,
        channel: str,
        from_serial: str | None,
        done: AttachDone,
        *,
        subscribe: bool = True,
        deadline_ms: int | None = None,
    ) -> None:
        """Resolve an ATTACH: the channel's serial and the replay after ``from_serial``."""
        self.now_ms = now_ms
        self.home_side.note_serials(channel, from_serial)
        deadline = deadline_ms if deadline_ms is not None else now_ms + OPERATION_DEADLINE_MS
        home = self.home_of(channel)
        if home == self.node_id:

            def local(ok: bool) -> None:
                if ok:
                    self.home_side.seen(self.now_ms, channel, self.homes[channel], from_serial)
                if ok and self.homes[channel].behind(from_serial):
                    why = f"a local client attached from {from_serial}"
                    self.home_side.step_down(channel, why, from_serial)
                    ok = False
                if not ok:
                    self._retry(
                        now_ms,
                        deadline,
                        lambda t: self.attach(
                            t, channel, from_serial, done, subscribe=subscribe, deadline_ms=deadline
                        ),
                        lambda: done(AttachResult("", None, unavailable(channel))),
                    )
                    return
                held = self.homes[channel]
                lg = held.log
                replay = lg.replay_after(from_serial, held.committed) if from_serial else None
                done(AttachResult(lg.serial(held.committed), replay, presence=lg.presence.to_wire()))

            self.home_side.with_settled_home(now_ms, channel, local)
            return
        retry = lambda t: self.attach(  # noqa: E731
            t, channel, from_serial, done, subscribe=subscribe, deadline_ms=deadline
        )
        self._remote_attach(
            now_ms,
            channel,
            home,
            from_serial,
            subscribe,
            done,
            on_fail=lambda: self._retry(
                self.now_ms, deadline, retry, lambda: done(AttachResult("", None, unavailable(channel)))
            ),
        )

    def publish(self, now_ms: int, pub: O.Publish, done: PublishDone) -> None:
        """Have the channel's home number, replicate and fan out ``pub`` (``Publisher.publish``)."""
        self.publisher.publish(now_ms, pub, done)

    def mark_resent(self, now_ms: int, conn: str, channel: str, msg_serial: int, how: str) -> None:
        self.publisher.mark_resent(now_ms, conn, channel, msg_serial, how)

    def reserve(self, conn: str, channel: str, msg_serial: int) -> None:
        self.publisher.reserve(conn, channel, msg_serial)

    def _remote_attach(
        self,
        now_ms: int,
        channel: str,
        home: str,
        from_serial: str | None,
        subscribe: bool,
        done: AttachDone,
        *,
        on_fail: Callable[[], None],
    ) -> None:
        """Attach at a remote home; with ``subscribe``, also (re)join our stream and catch it up.

        The request carries our stream's cursor, and the home answers with the entries after it
        as well as the client's replay, so that the stream and a newly attached client move
        together: the stream's other subscribers get exactly what the stream had not applied.
        """
        assert self.bus is not None
        stream = self.streams.get(channel) if subscribe else None
        stream_from = (
            f"{stream.epoch}:{stream.cursor}"
            if stream is not None and stream.home == home and stream.epoch
            else None
        )

        def on_reply(ok: bool, result: Any) -> None:
            # From a node our map no longer names home: stale (sim seed 5752, held by a partition).
            if not ok or not isinstance(result, dict) or self.home_of(channel) != home:
                on_fail()
                return
            last = str(result["last_serial"])
            if subscribe:
                self._catch_up(channel, home, stream_from, last, result.get("stream_entries"),
                               result.get("presence"))
            replay = result.get("entries")
            entries = None if replay is None else [Entry.from_wire(e) for e in replay]
            done(AttachResult(last, entries, presence=result.get("presence")))

        op = O.Attach(channel=channel, from_serial=from_serial, subscribe=subscribe, stream_from=stream_from)
        self.bus.request(home, op, on_reply, RPC_TIMEOUT_S)

    def _catch_up(self, channel: str, home: str, sent_from: str | None, last: str,
                  stream_entries: list[Any] | None, presence: list[Message] | None = None) -> None:
        """Bring our stream for ``channel`` to the home's ``last``, fanning out what it missed."""
        parsed = parse_serial(last)
        if parsed is None:
            return
        stream = self.streams.get(channel)
        if stream is None:
            behind = self._lowest_local(channel, parsed[0])
            if behind is not None and behind < parsed[1]:
                # Our stream was dropped (its subscribers' transports went) and the subscribers that
                # came back hold an older serial of this epoch: follow from the lowest of them and
                # replay, so that each gets exactly what it lacks (fan-out skips what one already has).
                stream = self.streams[channel] = Stream(home=home, epoch=parsed[0], cursor=behind)
                self._resync(self.now_ms, channel, stream)
                return
            self.streams[channel] = Stream(home=home, epoch=parsed[0], cursor=parsed[1])
            if self._local_interest(channel) and behind is None:
                # Local subscribers we cannot bring up to ``last`` exactly: say so, never skip silently.
                log.warning("channel.stream_restarted", channel=channel, home=home)
                self._lost(self.now_ms, channel, last, presence, f"stream restarted at {home}")
            return
        if stream.home != home:
            return  # re-pointed elsewhere meanwhile; that home's answer will move it
        stream.resyncing = False
        if sent_from is None:
            if stream.epoch is None:
                stream.epoch, stream.cursor = parsed
                return
            # We had a cursor but sent none (another home held it then): resync from it.
            self._resync(self.now_ms, channel, stream)
            return
        if stream_entries is None:
            # The home cannot continue our stream from its cursor: the history is gone (90003).
            if (stream.epoch, stream.cursor) != parsed:
                stream.epoch, stream.cursor = parsed
                self._lost(self.now_ms, channel, last, presence, f"{home} has no entries after {sent_from}")
            return
        for raw in stream_entries:
            entry = Entry.from_wire(raw)
            if entry.first_seq == stream.cursor + 1:
                stream.cursor = entry.last_seq
                self._fan_out(self.now_ms, channel, entry, entry.publisher)

    def _lowest_local(self, channel: str, epoch: str) -> int | None:
        """The lowest seq our local subscribers hold in ``epoch``; None if any of them holds another
        epoch or an unknown serial (or there are none with a serial)."""
        seqs = []
        for serial in self.local_serials(channel):
            parsed = parse_serial(serial) if serial else None
            if parsed is None or parsed[0] != epoch:
                return None
            seqs.append(parsed[1])
        return min(seqs, default=None)

    def release(self, channel: str) -> None:
        """No local client listens to ``channel`` any more: stop its stream."""
        stream = self.streams.pop(channel, None)
        if stream is not None and self.bus is not None:
            self.bus.push(stream.home, O.Unsubscribe(channel=channel))

    # ------------------------------------------------------------------
    # Requests and pushes from peers

    def handle_request(
        self, now_ms: int, src: str, op: O.ChannelOp, reply: Callable[[bool, Any], None]
    ) -> None:
        self.now_ms = now_ms
        self.zone_quorum.heard_from(src)
        if isinstance(op, (O.Attach, O.Publish, O.LogFetch)) and src not in self.view.peers:
            # Our map lags: let the caller retry.
            reply(False, O.Refused(O.Refusal.MAP_LAGS, f"{src} is not in this node's map yet"))
            return
        match op:
            case O.Attach():
                self.home_side.serve_attach(now_ms, src, op, reply)
            case O.Publish():
                self.home_side.serve_publish(now_ms, src, op, reply)
            case O.LogFetch():
                self.home_side.serve_log_fetch(now_ms, src, op.channel, reply)
            case O.Replicate():
                self.replica_side.serve_replicate(now_ms, src, op, reply)
            case O.ReplicaSync():
                self.replica_side.serve_replica_sync(now_ms, src, op, reply)
            case _:
                reply(False, O.Refused(O.Refusal.BAD_REQUEST, f"{op.OP} is not a request"))

    def handle_push(self, now_ms: int, src: str, op: O.ChannelOp) -> None:
        self.now_ms = now_ms
        self.zone_quorum.heard_from(src)
        match op:
            case O.Deliver(channel=channel, entry=entry):
                self._on_deliver(now_ms, src, channel, entry)
            case O.Take(channel=channel):
                self.home_side.handle_take(now_ms, channel)
            case O.CopyReleased():
                self.zone_quorum.copy_released(src, op)
            case O.Unsubscribe(channel=channel):
                home = self.homes.get(channel)
                if home is not None:
                    home.remote_subs.discard(src)
            case _:
                log.warning("peer.unexpected_push", peer=src, op=op.OP)

    def _on_deliver(self, now_ms: int, src: str, channel: str, entry: Entry) -> None:
        stream = self.streams.get(channel)
        if stream is None or stream.home != src:
            return
        parsed = parse_serial(str(entry.frame.wire.get("channelSerial", "")))
        epoch = parsed[0] if parsed else None
        newer = bool(epoch and stream.epoch and epoch_born(epoch) > epoch_born(stream.epoch))
        if newer and not stream.resyncing:
            # Our home started a newer epoch (its old one was lost with a zone; seed 508): re-attach,
            # whose answer announces the discontinuity (90003) to our subscribers.
            self._resync(now_ms, channel, stream)
            return
        if stream.resyncing or epoch != stream.epoch or entry.last_seq <= stream.cursor:
            return
        if entry.first_seq != stream.cursor + 1:
            self._resync(now_ms, channel, stream)
            return
        stream.cursor = entry.last_seq
        self._fan_out(now_ms, channel, entry, entry.publisher)

    def _resync(self, now_ms: int, channel: str, stream: Stream) -> None:
        """Re-attach the stream at its (new) home from its cursor; replay exactly what it missed."""
        stream.resyncing = True
        home = stream.home

        def failed() -> None:
            if self.streams.get(channel) is stream and stream.home == home:
                stream.resyncing = False
                self._retry(self.now_ms, None, lambda t: self._resync(t, channel, stream), lambda: None)

        self._remote_attach(now_ms, channel, home, None, True, lambda res: None, on_fail=failed)

    # ------------------------------------------------------------------
    # Time

    def _retry(
        self, now_ms: int, deadline_ms: int | None, again: Callable[[int], None], give_up: Callable[[], None]
    ) -> None:
        at = now_ms + RETRY_MS
        if deadline_ms is not None and at > deadline_ms:
            give_up()
            return
        self._retries.add(at, again)

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        for again in self._retries.take_due(now_ms):
            again(now_ms)
        for home in self.homes.values():
            home.log.expire(now_ms)
        zq = self.zone_quorum
        if zq.quorum(now_ms) != zq.last_quorum:
            zq.reassess(now_ms)  # a grant lapsed
        zq.drop_blocked(now_ms)
        self.home_side.keep_replicas_alive(now_ms)
        for name in list(self.replicas):
            copy = self.replicas[name]
            copy.expire(now_ms)
            idle = not len(copy) and not len(copy.presence)  # a copy with members is never idle
            if idle and copy.last_activity_ms < now_ms - 2 * self.config.retention_ms:
                del self.replicas[name]

    def next_deadline(self) -> int | None:
        retry, quorum = self._retries.next_deadline(), self.zone_quorum.next_deadline()
        return quorum if retry is None or (quorum is not None and quorum < retry) else retry

    def copies_to_leave(self) -> list[tuple[str, O.ReplicaSync]]:
        """A drain's last step for channel logs: (peer, our copy) for every copy held here, to the
        channel's next home and its replica (in our map). A copy must not leave with us unseen: the
        channel may have no home at the moment (demoted at a heal), and were its other copy lost
        next, entries every subscriber saw would be gone and the next epoch would number the
        re-sent publishes again (frontend.sim seed 9201: duplicated). A peer that is home, or holds
        more, refuses it (``ReplicaSide``)."""
        out = []
        for name in sorted(self.replicas):
            home = self.placement.channel_home(name)
            if home is None:
                continue
            copy = self.replicas[name]
            op = O.ReplicaSync(channel=name, log={**copy.snapshot(), "zone_only": copy.zone_only})
            for peer in dict.fromkeys([home, self.placement.replica_for(name, home)]):
                if peer is not None and peer != self.node_id and self.view.alive(peer):
                    out.append((peer, op))
        return out

    def missed_at_home(self, channel: str, serial: str, upto: int) -> list[Entry]:
        """The committed entries after ``serial`` up to seq ``upto`` from our home's log of
        ``channel`` ([] when we are not its home or no longer hold them)."""
        home = self.homes.get(channel)
        if home is None:
            return []
        return home.log.replay_after(serial, min(upto, home.committed)) or []

    def fanned_out_serial(self, channel: str) -> str | None:
        """The serial up to which this frontend has fanned ``channel`` out to its subscribers: its
        home's committed point, or its stream's cursor; None when it does neither."""
        home = self.homes.get(channel)
        if home is not None:
            return home.log.serial(home.committed)
        stream = self.streams.get(channel)
        if stream is not None and stream.epoch is not None:
            return f"{stream.epoch}:{stream.cursor}"
        return None

    def local_log(self, channel: str) -> ChannelLog | None:
        home = self.homes.get(channel)
        return home.log if home is not None else None

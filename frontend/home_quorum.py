"""The home side of the zone quorum: where a home's copy goes, and when a home must refuse.

``ChannelService`` builds one ``QuorumHomes``, which holds what this frontend knows of the zone
votes (the zones and witnesses it has seen, the grants it holds, what the witness told it); it reads
the homes and copies through ``QuorumHost`` and calls the home side through ``QuorumHomeSide``. The
rule and the witness are ``kernel/quorum.py``, the proof sketch is in docs/architecture.md ("Zone
quorum"). Each home chooses its copy with ``choose_replica``:

1. placement's replica, a frontend of **another zone**, when one is serving (no vote needed);
2. else, when this zone holds a majority of the zone votes (``kernel.quorum.assess``: its own zone
   plus the grants of witness zones, or a single-zone cluster), another frontend of **its own
   zone** (or no copy at all when it is the only frontend): the home is *degraded*, says so in the
   log (``channel.replica_degraded``) and in ``continuity_replication_degraded``;
3. else the home is *blocked*: nothing is ACKed, and publishes that were never sent to any copy
   are refused with 50350 naming the zones out of reach (``drop_blocked``): at once when this side
   *knows* it is the minority (``minority_known``: since it lost the majority, every witness router
   in reach refused it because another zone holds the grant, or none is in reach), else at the
   publish deadline (15 s; a witness may still grant us). Only its own clients' publishes are
   held so: one from another frontend is turned away unappended (``Home.turns_away``), since held
   past the sender's request timeout its outcome would be unknown to the sender, which then never
   NACKs it; the sender retries it and refuses it itself. A refused publish cannot be swapped
   with its connection's later ones: those still unresolved on the channel are refused with it
   (``publishing.py``), and a re-send of it (a client that missed the NACK while it was being
   moved) is answered from the session's memory, not numbered (frontend.sim seed 142 found that
   swap when blocked appends were refused after a 2 s grace).

A degraded home commits only while the majority holds (``quorum_allows``): a grant that lapses
stops its ACKs at once. ``grant`` takes a witness's answer; ``witness_request`` says what this
frontend should ask next (the trio driver in ``cluster.py`` and the simulation both call it).
Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from frontend import peerops as O
from frontend.home_records import publish_window
from kernel.errors import ErrorCode, ErrorInfo
from kernel.quorum import DEFAULT_LEASE_MS, QuorumState, assess, witness_routers, zones_seen

if TYPE_CHECKING:
    import random

    from frontend.bus import Bus
    from frontend.channel_log import ChannelLog
    from frontend.config import FrontendConfig
    from frontend.home_records import Home
    from frontend.metrics import Metrics
    from kernel.placement import ClusterView, Placement

log = structlog.get_logger("continuity.frontend")

RENEW_MS = DEFAULT_LEASE_MS // 3  # a held grant is renewed this often
WITHHOLD_MAX_MS = 5_000  # a restarted node withholds its copies until a witness answered, at most this
# While our map heals (it re-admitted a frontend and still lists others dead, or a frontend it lists
# dead talks to us), acquisitions wait this long at most: a healed cut shows its members one by one
# (``new_epoch_wait``, ``acquire_wait``).
REJOIN_SETTLE_MS = 2_000


def no_quorum(channel: str, state: QuorumState) -> ErrorInfo:
    return ErrorInfo.of(
        ErrorCode.NO_ZONE_QUORUM,
        f"channel {channel} cannot be published to: no copy can be placed in another zone and "
        f"{state.describe()}; this side of the cluster does not hold a majority of zones",
    )


def replica_missing(home: Home) -> bool:
    """No copy can be placed (no other zone serving, and no majority of zones to copy inside our
    own): appends wait (no ACK), and are refused after a grace (``drop_blocked``)."""
    return home.replica is None and home.blocked


class QuorumHost(Protocol):
    """What ``QuorumHomes`` reads on its host (``ChannelService``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def bus(self) -> Bus | None: ...

    @property
    def view(self) -> ClusterView: ...

    @property
    def placement(self) -> Placement: ...

    @property
    def homes(self) -> dict[str, Home]: ...

    @property
    def replicas(self) -> dict[str, ChannelLog]: ...

    @property
    def now_ms(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    @property
    def witness_poke(self) -> Callable[[], None]: ...  # ask the witness now (the driver's)


class QuorumHomeSide(Protocol):
    """What ``QuorumHomes`` calls on the home side (``homes.HomeSide``)."""

    # channel -> the callbacks waiting for its home to be acquired here
    @property
    def acquiring(self) -> dict[str, list[Callable[[bool], None]]]: ...

    def sync_replica(self, now_ms: int, channel: str, home: Home) -> None: ...

    def demote(self, name: str) -> None: ...


class QuorumHomes:
    """The zone votes as this frontend knows them, and what they let its homes do."""

    def __init__(self, host: QuorumHost, rng: random.Random, home_side: QuorumHomeSide) -> None:
        self.host = host
        self.home_side = home_side
        self.grants: dict[str, int] = {}  # witness router -> when its grant expires here
        self._zones_remembered: set[str] = set(self.host.config.zones)
        self._witnesses_remembered: dict[str, set[str]] = {}
        # We asked for (or hold) a grant: release it when done. True at start: a process restarted
        # after holding one (kill -9) holds nothing now, and says so to the witness once.
        self._asked_grant = True
        self.last_quorum: QuorumState | None = None
        self._quorum_memo: tuple[ClusterView, tuple[Any, ...], QuorumState] | None = None
        self._setup_logged = ""
        # Restart detection at the witness: a process's boot id (a restarted holder lost what it
        # held alone), whether a witness has answered us yet, and until when our zone's data is lost.
        self.boot = f"{rng.getrandbits(48):012x}"
        self._witness_heard = False
        self._withhold_until: int | None = None
        self._data_lost_at = self._data_lost_until = 0
        # Since when no other zone serves and no majority is held here, and when each witness router
        # last refused us (the request's send time) because another zone holds its grant.
        self._minority_since: int | None = None
        self._refused_ms: dict[str, int] = {}
        self.leaving = False  # a drain is done: no grant is needed any more, only a release
        self._dead_fronts: set[str] = set()  # frontends dead in our map
        self._revived_ms: int | None = None  # when our map last re-admitted one of them
        self._rejoined_ms: int | None = None  # the same, while we held no majority
        self._heard_dead_ms: dict[str, int] = {}  # a frontend dead in our map spoke to us: first when

    # -- reading the quorum ---------------------------------------------------------
    def remember_zones(self, view: ClusterView) -> None:
        dead = {p.node_id for p in view.frontends() if not p.alive}
        if any(view.alive(n) for n in self._dead_fronts - dead):
            self._revived_ms = self.host.now_ms
            if self._minority_since is not None:  # back from a side of a cut that held no majority
                self._rejoined_ms = self.host.now_ms
        self._dead_fronts = dead
        self._heard_dead_ms = {n: t for n, t in self._heard_dead_ms.items() if n in dead}
        self._zones_remembered |= zones_seen(view)
        for zone, routers in witness_routers(view).items():
            self._witnesses_remembered.setdefault(zone, set()).update(routers)

    def quorum(self, now_ms: int | None = None) -> QuorumState:
        now = self.host.now_ms if now_ms is None else now_ms
        # Asked several times per publish, and O(map): memoized on what ``assess`` reads. The map is
        # immutable (replaced on change), the remembered zones and routers only grow (their sizes
        # tell a change), and the time matters only through which grants are unexpired.
        grants = self.grants
        key = (len(self._zones_remembered), sum(map(len, self._witnesses_remembered.values())),
               tuple(r for r, until in grants.items() if until > now) if grants else ())  # fmt: skip
        view = self.host.view
        memo = self._quorum_memo
        if memo is not None and memo[0] is view and memo[1] == key:
            return memo[2]
        state = assess(
            view,
            self.host.config.zone,
            remembered=self._zones_remembered,
            remembered_witnesses=self._witnesses_remembered,
            configured=self.host.config.zones,
            grants=self.grants,
            now_ms=now,
        )
        self._quorum_memo = (view, key, state)
        return state

    def choose_replica(self, channel: str, state: QuorumState) -> tuple[str | None, bool, bool]:
        """(replica, blocked, degraded) for a home of ``channel`` here."""
        replica = self.host.placement.replica_for(channel, self.host.node_id)
        if replica is not None or self.host.bus is None:
            return replica, False, False
        if not state.may_degrade:
            return None, True, False
        order = [n for n in self.host.placement.channel_order(channel) if n != self.host.node_id]
        return (order[0] if order else None), False, True

    def quorum_allows(self, home: Home) -> bool:
        """A degraded home may commit only while this zone holds the majority."""
        return not home.degraded or self.quorum().may_degrade

    def minority_known(self, now_ms: int | None = None) -> bool:
        """This side knows it holds no majority of zones: since it lost it, every witness router in
        reach refused a request sent after that because another zone holds the grant (or none is in
        reach). Blocked publishes are then refused at once, not at the publish deadline."""
        since = self._minority_since
        if since is None or not self.host.ready or self.host.bus is None:
            return False
        state = self.quorum(now_ms)
        if state.other_zone_serving or state.may_degrade or not state.witnesses:
            # Without a witness zone, losing sight of the other zone keeps the deadline rule: both
            # sides of a cut are minorities, and a prompt refusal on each let publishes in flight
            # across the cut be refused and then numbered (make sim: nacked_delivered).
            return False
        routers = {r for z in state.witnesses for r in self._witnesses_remembered.get(z, ())}
        return all(self._refused_ms.get(r, -1) >= since for r in routers if self.host.view.alive(r))

    def write_available(self) -> bool:
        """Whether this frontend can number publishes now (``/health``'s readiness)."""
        state = self.quorum()
        return state.other_zone_serving or state.may_degrade or self.host.bus is None

    def replication_degraded(self) -> bool:
        """Homes here copy inside one zone (or nowhere): a single-zone cluster, or a lost zone."""
        single = self.quorum().single_zone and self.host.bus is not None
        return single or any(h.degraded for h in self.host.homes.values())

    def write_status(self) -> dict[str, object]:
        """For ``/health``, ``/cluster`` and the dashboard: can this node number publishes, and how."""
        state = self.quorum()
        return {
            "available": self.write_available(),
            "degraded": self.replication_degraded(),
            "majority": state.may_degrade,
            # It knows it holds no majority (the witness refused it, or none is in reach): publishes
            # are refused with 50350 at once; else, while it waits for a grant, at the deadline.
            "minority_known": self.minority_known(),
            "witness_place": self.witness_place(),
            "zones": sorted(state.votes),
            "witness_zones": sorted(state.witnesses),
            "zones_out_of_reach": sorted(state.missing),
            "detail": state.describe(),
        }

    # -- witness grants ------------------------------------------------------------------
    def witness_request(self, now_ms: int) -> tuple[list[str], bool, bool, bool] | None:
        """What to ask the witness routers now: (routers, need, holding, alone), or None (nothing to
        ask). ``need``: a grant would let our homes go on; ``holding``: some log here holds entries
        whose only copies are in this zone (then a release must wait); ``alone``: some home here
        commits with no copy at all (the only frontend of its zone left)."""
        state = self.quorum(now_ms)
        holding = self.holding_zone_only()
        need = state.wants_grant and not self.leaving
        if not need and not holding:
            # About to release (or nothing to ask): stop counting our grants first, so that no
            # home goes on alone on a grant the witness is being told we no longer hold.
            self.grants.clear()
            if not self._asked_grant:
                return None
        routers = sorted({r for z in state.witnesses for r in self._witnesses_remembered.get(z, ())})
        routers = [r for r in routers if self.host.view.alive(r)]
        if not routers:
            return None
        alone = any(h.degraded and h.replica is None for h in self.host.homes.values())
        return routers, need, holding, alone

    def grant(
        self, now_ms: int, router: str, sent_ms: int, granted: bool, need: bool, holder: str | None,
        *, lost: bool = False, lost_age_ms: int = 0,
    ) -> None:
        """A witness router answered a request sent at ``sent_ms``. ``lost``: an earlier process of
        this node held a grant and entries only its zone held, and was restarted: they are gone;
        the witness decided so ``lost_age_ms`` ago. A node is told when it next asks, which may be
        long after (chaos seeds 973895298 and 1930366970: zone a heard 13 s to 22 s late, and dated
        from then, every log it had acquired or copied since the loss counted as older than the
        news: new epochs everywhere, and publishes re-sent across them numbered twice). The loss is
        dated from the decision; copies made after it are continued, and older news is done with."""
        self._witness_heard = True
        lost_at = now_ms - max(0, lost_age_ms)
        if lost and lost_at + 2 * self.host.config.retention_ms <= now_ms:
            log.info("zone.degraded_data_lost_old", router=router, age_ms=lost_age_ms)
        elif lost:
            self._data_lost_at, self._data_lost_until = lost_at, lost_at + 2 * self.host.config.retention_ms
            log.error(
                "zone.degraded_data_lost", router=router, until_ms=self._data_lost_until,
                homes=len(self.host.homes),
            )
            for name in [n for n, h in self.host.homes.items() if h.blocked]:
                # A blocked home may hold a stale copy (it never committed since): re-acquired
                # under a new epoch. A home that commits holds its channel's whole log.
                self.home_side.demote(name)
        if granted:
            self.grants[router] = sent_ms + DEFAULT_LEASE_MS
            self._asked_grant = True
            self._refused_ms.pop(router, None)
        else:
            self.grants.pop(router, None)
            if need and holder is not None and holder != self.host.config.zone:
                self._refused_ms[router] = sent_ms
            if not need:
                self._asked_grant = bool(self.grants) or self.holding_zone_only()
            if holder is not None and holder != self.host.config.zone and need:
                log.warning("zone.grant_refused", router=router, holder=holder)
        self.reassess(now_ms)
        self.drop_blocked(now_ms)  # the refusal may be what tells us we are the minority

    def witness_unanswered(self, need: bool) -> None:
        """A request got no answer: if it asked for a grant, the witness may have given it (and keeps
        our zone's place until told otherwise), so a release is sent once nothing is needed."""
        if need:
            self._asked_grant = True

    def holding_zone_only(self) -> bool:
        """Some log here, a home's or a copy's (a demoted degraded home leaves its log as a copy),
        holds entries committed with copies only in this zone: the witness must keep our zone's
        place until another zone holds them (frontend.sim seed 232: a home demoted at a heal made
        its node release, and a stale copy in the other zone was then continued: split_brain)."""
        return any(h.degraded or h.log.zone_only for h in self.host.homes.values()) or any(
            c.zone_only for c in self.host.replicas.values()
        )

    def lost_since(self) -> int | None:
        """When this node learned that a zone may have lost entries it ACKed alone (a holder
        restarted), for two retention windows after; else None."""
        return self._data_lost_at if self._data_lost_until > self.host.now_ms else None

    def stale_after_loss(self, best: ChannelLog | None, heard: list[Any] | None) -> bool:
        """A log about to be continued from copies (not handed over by a live home) was copied
        before a zone's loss was known, here or at a peer that answered: it may miss entries the lost
        zone ACKed alone, so a new epoch starts instead (90003 to subscribers: announced, never a
        serial given out twice). Copies made after the news (new epochs' copies) are continued."""
        since = [t for t in [self.lost_since(), *(heard or [])] if isinstance(t, int)]
        return bool(since) and (best is None or best.created_ms < max(since))

    def withhold_log_fetch(self, reply: Callable[[bool, Any], None]) -> bool:
        """Until a witness has answered this process, a copy it serves could hide that our zone lost
        data: answer "not now" (the acquirer defers), when there are witnesses to hear from."""
        routers = [r for names in witness_routers(self.host.view).values() for r in names]
        if self._witness_heard or not any(self.host.view.alive(r) for r in routers):
            return False
        if self._withhold_until is None:
            self._withhold_until = self.host.now_ms + WITHHOLD_MAX_MS
        if self.host.now_ms >= self._withhold_until:
            return False  # a witness in the map that never answers must not stall acquisitions
        reply(False, O.Refused(O.Refusal.ACQUIRING, "waiting for the witness's answer after a restart"))
        return True

    # -- acting on changes -------------------------------------------------------------------
    def reassess(self, now_ms: int) -> None:
        """The quorum may have changed (a map, a grant, time): re-place every home's copy."""
        state = self.quorum(now_ms)
        before = self.last_quorum
        self.last_quorum = state
        if state.other_zone_serving or state.may_degrade or state.single_zone:
            self._minority_since = None
        elif self._minority_since is None:
            self._minority_since = now_ms
        if before is not None and before.may_degrade != state.may_degrade:
            log.warning(
                "zone.quorum_changed", majority=state.may_degrade, detail=state.describe(),
                homes=len(self.host.homes),
            )  # fmt: skip
        self._warn_setup(state)
        for name, home in list(self.host.homes.items()):
            self._place_copy(now_ms, name, home, state)
        self.host.metrics.replication_degraded.set(1 if self.replication_degraded() else 0)
        self.host.metrics.write_available.set(1 if self.write_available() else 0)

    def _warn_setup(self, state: QuorumState) -> None:
        """Say at start (once the map settled), and on every change, what a zone's loss would do."""
        if not self.host.ready or self.host.bus is None:
            return
        setup = "single_zone" if state.single_zone else ("no_witness" if not state.witnesses else "quorum")
        if setup == self._setup_logged:
            return
        self._setup_logged = setup
        if setup == "single_zone":
            log.warning(
                "zone.single_zone", zone=state.zone,
                detail="every frontend is in one zone: copies are kept on another frontend of this "
                "zone (or nowhere, alone), so losing the zone loses what it held "
                "(continuity_replication_degraded=1). Run frontends in two zones and a router in a "
                "third for zone-loss tolerance.",
            )  # fmt: skip
        elif setup == "no_witness":
            log.warning(
                "zone.no_witness", zones=sorted(state.votes),
                detail="no witness zone (a zone with only a router): losing a zone stops publishing on the "
                "other (no side holds a majority of zones). Run a router in a third zone.",
            )  # fmt: skip
        else:
            log.info("zone.quorum_ready", zones=sorted(state.votes), witness_zones=sorted(state.witnesses))

    def _place_copy(self, now_ms: int, name: str, home: Home, state: QuorumState) -> None:
        replica, blocked, degraded = self.choose_replica(name, state)
        if replica == home.replica and blocked == home.blocked:
            if degraded and not home.degraded:
                home.degraded = True
            return
        if degraded and not home.degraded:
            log.warning(
                "channel.replica_degraded", channel=name, replica=replica, detail=state.describe()
            )
        elif blocked and not home.blocked:
            log.warning("channel.replica_blocked", channel=name, detail=state.describe())
        home.replica, home.blocked = replica, blocked
        home.degraded = home.degraded or degraded  # cleared once a copy in another zone is synced
        home.replica_synced = False
        self.home_side.sync_replica(now_ms, name, home)

    def synced_across_zones(self, channel: str, home: Home, synced: int) -> None:
        """The replica confirmed the whole log up to ``synced``: if it is in another zone, nothing
        lives in one zone, and the other frontends are told so (``copy_released``), for
        the copies they took while this log was degraded, here or at an earlier home of this epoch
        (chaos seed 28473: fe-a1 kept the firehose's in-zone copy, and with it zone a's place at the
        witness, after the log had synced to zone b; zone a was then lost, zone b got no grant until
        fe-a1 restarted, which the witness took for the loss of zone a's data: 90003 on every channel
        zone b re-homed, a new epoch within the TTL). Every frontend is told, not only our zone's:
        a home that took a degraded zone's log at a heal is in the *other* zone, and the degraded
        zone's copies its replica did not replace kept that zone's place (chaos seed 1930366970:
        fe-b2's copy of chaos:1 held zone b's grant 25 s after the heal, until zone b was lost and
        the witness reported its data lost: new epochs, 90003 within the TTL). Once per tenure (a
        log taken from another node's copy does not carry that copy's mark), and after every
        degraded stretch."""
        if home.replica is None or self.host.view.zone_of(home.replica) == self.host.config.zone:
            return
        tell = home.degraded or home.log.zone_only or not home.copies_released
        home.degraded = home.log.zone_only = False
        self.release_if_done()
        if not tell or self.host.bus is None:
            return
        home.copies_released = True
        release = O.CopyReleased(channel=channel, epoch=home.log.epoch, last_seq=synced)
        for peer in self.host.view.frontends():
            if peer.node_id in (self.host.node_id, home.replica) or not peer.alive:
                continue
            if peer.zone == self.host.config.zone or synced > 0:  # an empty log releases nothing there
                self.host.bus.push(peer.node_id, release)

    def copy_released(self, src: str, op: O.CopyReleased) -> None:
        """A home holds ``op.channel``'s log up to ``op.last_seq`` of ``op.epoch`` in two zones: a
        copy of ours within that is held there too (one epoch, one history). A home of *another*
        zone releases our copy of its epoch whatever its length: it took the channel from the
        copies it found (ours among them) and numbers every serial past ``op.last_seq`` itself, so
        what our copy holds past it was never committed (chaos seed 675552696: fe-b1's copy of
        chaos:0 got four in-doubt entries of zone b's demoted home after fe-a1 had fetched it, was
        never released, and kept zone b's place at the witness until fe-b1 drained, 61 s)."""
        copy = self.host.replicas.get(op.channel)
        if copy is None or not copy.zone_only or copy.epoch != op.epoch:
            return
        if copy.last_seq > op.last_seq and self.host.view.zone_of(src) == self.host.config.zone:
            return
        copy.zone_only = False
        log.info("channel.copy_released", channel=op.channel, home=src, last_seq=copy.last_seq)
        self.release_if_done()

    def release_if_done(self) -> None:
        """Our zone's place at the witness is no longer needed: release it now, not at the next
        renewal (up to RENEW_MS later). Chaos seed 1930366970 (t 100.1 s): zone b's last zone-only
        copy was released 10 ms before zone b was lost, its release to the witness was still 1.6 s
        away, and the witness took the restarted holders for the loss of zone b's data: new epochs
        on every channel zone a re-homed, though zone a held every entry."""
        if self._asked_grant and not self.holding_zone_only():
            self.host.witness_poke()

    def leave(self) -> None:
        """A drain is done (its homes handed over, its copies left): this process needs no grant any
        more, and asks the witness now to release our zone's place unless it still holds entries
        only our zone has. Chaos seed 666654006 (issue 18): fe-b2 drained holding zone b's place, the
        witness forgot it as gone, and fe-b1, drained and restarted, was taken for a holder restart:
        zone b's data reported lost, new epochs on every channel zone a re-homed (90003 within the
        TTL). The driver sends this release before the process leaves the map (``cluster.py``)."""
        self.leaving = True
        self.host.witness_poke()

    def witness_place(self) -> bool:
        """The witness may still keep our zone's place for us: we hold entries only our zone has,
        or asked for (or hold) a grant and have not yet been answered a release."""
        return self._asked_grant or self.holding_zone_only()

    def drop_blocked(self, now_ms: int) -> None:
        """Refuse, for certain, the appends a blocked home (no copy can be placed: replica_missing)
        has held for the publish window and never sent to any replica: they are cut from the log,
        so they are never delivered, and their publishers get NACK 50350 naming the zones out of
        reach (DESIGN 7: nothing NACKed is delivered). An append that was sent may sit in a copy,
        so it waits."""
        state = None
        window = 0 if self.minority_known(now_ms) else publish_window(self.host.config)
        for name, home in self.host.homes.items():
            if not home.pending or not replica_missing(home):
                continue
            drop = home.take_blocked(now_ms, window)
            if not drop:
                continue
            state = state or self.quorum(now_ms)
            log.warning(
                "channel.blocked_appends_refused", channel=name, count=len(drop), detail=state.describe()
            )
            self.host.metrics.publishes_refused_no_quorum.inc(len(drop))
            for item in reversed(drop):
                for waiter, _ in item.waiters:
                    waiter(None, no_quorum(name, state))

    def next_deadline(self) -> int | None:
        """When ``drop_blocked`` next has something to refuse, or a grant runs out (no lists built:
        asked after every input)."""
        nxt = None
        for until in self.grants.values() if self.grants else ():
            if until > self.host.now_ms and (nxt is None or until < nxt):
                nxt = until
        window = publish_window(self.host.config)
        for home in self.host.homes.values():
            if home.pending and replica_missing(home) and not home.pending[-1].sent:
                t = home.pending[-1].queued_ms + window  # the tail goes first
                if t > self.host.now_ms and (nxt is None or t < nxt):
                    nxt = t
        return nxt

    def defer_new_epoch(self, channel: str, why: str, **detail: Any) -> None:
        """An acquisition that would start a new epoch waits: its waiters fail, and are retried."""
        log.info("channel.acquire_deferred", channel=channel, reason=why, **detail)
        for cb in self.home_side.acquiring.pop(channel, []):
            cb(False)

    def new_epoch_wait(self) -> str | None:
        """Why an acquisition that found no copy must not start a new epoch yet, if it must not.

        1. The other zone, where a copy of every ACKed message lives, is out of sight and we hold
           no majority (frontend.sim seed 4; chaos seed 12313).
        2. Our map re-admitted a frontend it had dead less than ``REJOIN_SETTLE_MS`` ago and still
           lists others dead: a healed cut, whose members reappear one by one, and the frontends
           not yet back may hold the channel's copies, or be its live home (chaos seed 1516076113:
           fe-b2, partitioned alone, saw fe-a2 again 65 ms before fe-a1, the home, and fe-b1, its
           replica; its own copy was superseded, fe-a2 had none, and the epoch it started won over
           fe-a1's live log: 90003 for every subscriber).
        """
        if self.other_zone_out_of_reach() and not self.quorum().may_degrade:
            return "no copy and no other zone in reach"
        if self._healing_since(self._revived_ms):
            return "map still re-admitting frontends after a heal"
        return None

    def heard_from(self, peer: str) -> None:
        """A peer sent us a request or a push: if our map lists it dead, our map lags behind the
        cluster (``acquire_wait``), from the first such word until the map shows it alive again."""
        if peer in self._dead_fronts:
            self._heard_dead_ms.setdefault(peer, self.host.now_ms)

    def _healing_since(self, since: int | None) -> bool:
        """Our map still lists frontends dead, less than ``REJOIN_SETTLE_MS`` after ``since``."""
        return since is not None and bool(self._dead_fronts) and self.host.now_ms - since < REJOIN_SETTLE_MS

    def acquire_wait(self) -> str | None:
        """Why no acquisition may start now, if none may (not even from a copy): the map is not yet
        settled, or we are back from a side of a cut that held no majority (``_minority_since``), it
        re-admitted a frontend less than ``REJOIN_SETTLE_MS`` ago and still lists others dead. Our
        copies may be stale and the home that went on while we were cut off may be among those not
        yet back: taking the home from the copies in sight would number its serials again. Or a
        frontend our map lists dead spoke to us less than ``REJOIN_SETTLE_MS`` ago."""
        if not self.host.ready:
            return "cluster map not yet settled"
        if self._healing_since(self._rejoined_ms):
            return "back from a minority: map still re-admitting frontends"
        if any(self._healing_since(t) for t in self._heard_dead_ms.values()):
            # A frontend our map lists dead is talking to us (chaos seed 1516076113, second run:
            # fe-a1, home while fe-b2 was cut off, attached at fe-b2 past fe-b2's copy 30 ms before
            # fe-b2's map showed it; fe-b2 stepped down and, asking only fe-a2, started a new epoch).
            # It may be the channel's live home: wait for the map, at most REJOIN_SETTLE_MS.
            return "a frontend our map lists dead is talking to us"
        return None

    def other_zone_out_of_reach(self) -> bool:
        """The map knows a frontend in another zone, and none of them is alive in it."""
        if self.host.bus is None or not self.host.placement.other_zone_known(self.host.node_id):
            return False
        zone = self.host.view.zone_of(self.host.node_id)
        return not any(p.alive and p.zone != zone for p in self.host.view.frontends())

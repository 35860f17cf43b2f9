"""Copy watches: a frontend holding a connection's copy leaves its members when its owner died, and
the question every frontend asks before leaving members on a connection's behalf.

Theory of operation
-------------------
A frontend that holds a copy of a connection's state (its secondary, or an older copy) watches it
when the copy lists presence members. While the owner is alive in the map, the owner's own timers
rule (``presence.py``). Once the owner is out of sight for ``presence_linger_ms`` (its death took the
client's transport with it, so the client has been away that long; a takeover reading the copy
restarts the clock; when it may be itself that is cut off, no other frontend of the owner's zone
nor any router being alive in its map, it waits for the copy to expire unclaimed instead), the
holder asks the question below and, if nobody owns the connection now,
leaves the members and marks its copy *left*, so that a takeover from it after all (the client back
within the TTL) re-enters them. A takeover, or the owner writing again, supersedes the copy (put or
discard) and ends the watch; so does the ``presence_owned`` push a takeover sends every frontend.

*The question* (``presence_owner``, a pull): before members are left on a connection's behalf,
every other live frontend is asked whether it owns the connection above a given epoch. Leaves go
ahead only when all answered no; one yes ends the matter (the connection lives on elsewhere); a
missing answer, a peer that sees the owner alive (we are cut off from it alone), or no live peer at
all (we are cut off from everyone) means ask again later. A takeover that fetched the copy while
the question was out voids the answers (its new owner may not have said so yet). A push or a
discard lost in a partition therefore cannot make a frontend leave members whose connection was
taken over elsewhere. Pure apart from the bus: times come in, peers answer through callbacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from frontend import peerops as O
from frontend.presence_set import Member, PresenceAction
from frontend.session import SessionState

if TYPE_CHECKING:
    from frontend.node_parts import NodeParts

log = structlog.get_logger("continuity.frontend")

OWNER_QUERY_TIMEOUT_S = 2.0  # a frontend that does not say whether it owns a connection by then
RETRY_MS = 1000  # a leave whose channel's home did not answer is tried again after this

# Publish a server LEAVE (or ENTER) for every member of one connection (channel -> clientId -> member),
# then ``then(ok)``: ``Presence._emit``, handed in so that the watches do not import presence.py.
EmitMembers = Callable[[int, str, PresenceAction, dict[str, dict[str, Member]], Callable[[bool], None]], None]


@dataclass(slots=True)
class CopyWatch:
    """A connection copy held here whose members may need leaving if its owner dies."""

    owner: str
    members: dict[str, dict[str, Member]]  # channel -> clientId -> member, as the copy says
    put_ms: int  # when the owner last wrote the copy: it expires a TTL (plus idle) later
    epoch: int  # the ownership epoch of the copy: a discard of a newer one ends the watch
    dead_since: int | None = None  # since when the owner is out of sight (or the copy was last read)
    asking: bool = False  # the other frontends are being asked whether one owns it now
    reads: int = 0  # how many times a takeover fetched the copy: one while asking voids the answers


class CopyWatches:
    def __init__(self, node: NodeParts, emit: EmitMembers) -> None:
        self.node = node
        self.emit = emit
        self.watches: dict[str, CopyWatch] = {}
        self.reentering: set[tuple[str, str, str]] = set()  # (conn, channel, clientId) being re-entered

    @property
    def linger_ms(self) -> int:
        return self.node.config.presence_linger_ms

    # -- who owns a connection ----------------------------------------------
    def owns(self, conn: str, epoch: int) -> bool:
        """Whether this frontend holds the live state of ``conn`` above ``epoch`` (PresenceOwner)."""
        s = self.node.sessions.get(conn)
        return s is not None and not s.terminal and s.epoch > epoch

    def confirm_unowned(
        self, conn: str, epoch: int, then: Callable[[bool | None], None], owner: str | None = None
    ) -> None:
        """Ask every other live frontend whether it owns ``conn`` above ``epoch``, before members
        are left on the connection's behalf: ``then(True)`` if none does, ``then(False)`` if one
        does, ``then(None)`` if one did not answer, or sees ``owner`` alive, or none is alive
        while the map holds others (the caller asks again later). A pull: a ``presence_owned``
        push or a discard that was lost (a partition, a restart) cannot make a frontend leave
        members of a connection that lives on elsewhere, and a frontend cut off from everyone
        (or from a live owner alone) cannot confirm anything: its leaves would be numbered when
        the partition heals, with the owner's client still connected (frontend/simpresence.py
        copy_holder_cut_off: an isolated copy holder left a live member, 20/20 seeds)."""
        node = self.node
        bus = node.channels.bus
        others = [p for p in node.channels.view.frontends() if p.node_id != node.node_id]
        peers = [p.node_id for p in others if p.alive]
        if bus is None or not others:
            then(True)  # a frontend alone by design (no cluster): nobody else could own it
            return
        if not peers:
            then(None)  # everyone else out of sight: it may be us who are cut off
            return
        left = len(peers)
        owned = unanswered = False

        def one(ok: bool, res: Any) -> None:
            nonlocal left, owned, unanswered
            left -= 1
            if ok and isinstance(res, dict):
                owned = owned or bool(res.get("owned"))
                unanswered = unanswered or bool(res.get("owner_alive"))
            else:
                unanswered = True
            if left == 0:
                then(False if owned else None if unanswered else True)

        ask = O.PresenceOwner(connection_id=conn, epoch=epoch, owner=owner)
        for peer in peers:
            bus.request(peer, ask, one, OWNER_QUERY_TIMEOUT_S)

    def copy_out_of_sight(self, secondary: str | None) -> bool:
        """Whether the frontend holding a connection's copy (its ``secondary``) is in our map and
        out of sight. Our client's transport is gone and the client may be back there: a takeover
        from that copy (the router's way to a cut-off owner's connection) would not hear our
        question, nor we its discard. Chaos seed 475497038: zone a cut off, fe-a1's linger asked
        fe-a2 alone and left both18, whose connection fe-b2 had taken over 3 s before (an owner
        killed for good has its secondary reassigned to a live one, ``reassign_secondaries``)."""
        view = self.node.channels.view
        return secondary is not None and secondary in view.peers and not view.alive(secondary)

    # -- owner side: a stale leave of a live member -------------------------
    def entry_seen(self, now_ms: int, channel: str, events: list[Member]) -> None:
        """A presence entry of ``channel`` was fanned out here. A server leave (synthesized id) of
        a member that a connection owned here still holds, not left by this owner (its own leaves
        drop the member or mark it gone first), came from a copy holder that was cut off from us
        and confirmed its leave with its side of a partition; it was numbered at the heal, with
        the client connected all along (frontend/simpresence.py zone_cut_off). The owner enters
        the member again, later by timestamp (RTP2b1), so every set holds it again: observers saw
        one leave and one enter."""
        node = self.node
        for ev in events:
            conn, client_id = str(ev.get("connectionId")), str(ev.get("clientId"))
            if int(ev.get("action", -1)) != PresenceAction.LEAVE or str(ev.get("id", "")).startswith(conn):
                continue
            s = node.sessions.get(conn)
            # Only a connection whose client is on it right now: its member certainly lives (a
            # detached one may have been taken over elsewhere, unheard, and left there for good).
            if s is None or s.state is not SessionState.ACTIVE or s.presence.gone:
                continue
            held = s.presence.channels.get(channel, {}).get(client_id)
            key = (conn, channel, client_id)
            if held is None or key in self.reentering:
                continue
            if int(ev.get("timestamp") or 0) < int(held.get("timestamp") or 0):
                continue  # older than the member's last event here: answered already (seen again
                # on a stream's catch-up: frontend.simpresence zone_cut_off seed 24 re-entered twice)
            self.reentering.add(key)
            log.warning("presence.stale_leave_reentered", connection_id=conn, channel=channel)

            def then(ok: bool, key: tuple[str, str, str] = key, held: Member = held) -> None:
                self.reentering.discard(key)
                if ok:  # the re-entry is the member's last event now (its timestamp is at least this)
                    held["timestamp"] = max(int(held.get("timestamp") or 0) + 1, now_ms)

            self.emit(now_ms, conn, PresenceAction.ENTER, {channel: {client_id: held}}, then)

    # -- copy holder side (the owner is dead) -------------------------------
    def copy_read(self, now_ms: int, conn: str) -> None:
        """A takeover fetched our copy of ``conn``: hold off its leaves (it is being claimed)."""
        watch = self.watches.get(conn)
        if watch is not None:
            watch.reads += 1
            if watch.dead_since is not None:
                watch.dead_since = now_ms

    def copy_put(self, now_ms: int, owner: str, state: dict[str, Any]) -> None:
        conn = str(state.get("id"))
        raw = state.get("presence")
        if isinstance(raw, dict) and raw.get("channels") and not raw.get("gone"):
            if conn not in self.watches:
                log.info("presence.copy_watched", connection_id=conn, owner=owner)
            self.watches[conn] = CopyWatch(owner, dict(raw["channels"]), now_ms, int(state.get("epoch", 0)))
        elif self.watches.pop(conn, None) is not None:
            log.info("presence.copy_unwatched", connection_id=conn, owner=owner)

    def copy_discarded(self, conn: str, below_epoch: int) -> None:
        """A newer owner discarded copies below ``below_epoch`` (it took the connection over)."""
        watch = self.watches.get(conn)
        if watch is not None and watch.epoch < below_epoch:
            del self.watches[conn]
            log.info("presence.copy_unwatched", connection_id=conn, owner=watch.owner, below=below_epoch)

    def check(self, now_ms: int) -> None:
        """Leave the members of copies whose owner has been out of sight for the linger, once no
        live frontend owns the connection (``_confirm_unowned``).

        The owner's death took the connection's transport with it, so its client has been away
        at least that long (Ably's 15 s); one that came back elsewhere was taken over, and its new
        owner answers. A takeover, or the owner writing again, supersedes the copy (put or
        discard) and ends the watch at once; the ``presence_owned`` push is the fast path, the
        question the safe one. The copy is marked left, so a takeover from it after all (a client
        back within the TTL) re-enters the members."""
        node = self.node
        view = node.channels.view
        for conn, watch in list(self.watches.items()):
            if conn in node.sessions:
                del self.watches[conn]  # we took it over ourselves
                continue
            if view.alive(watch.owner):
                watch.dead_since = None
                continue
            if watch.dead_since is None:
                watch.dead_since = now_ms
            due = watch.dead_since + self.linger_ms
            if self._maybe_cut_off(watch.owner):
                due = max(due, watch.put_ms + node.ownership.copies.ttl_ms)
                log.info("presence.maybe_cut_off", connection_id=conn, owner=watch.owner)
            if watch.asking or now_ms < due:
                continue
            watch.asking = True
            verdict = functools.partial(self._watch_verdict, conn, watch, watch.reads)
            self.confirm_unowned(conn, watch.epoch, verdict, watch.owner)

    def _maybe_cut_off(self, owner: str) -> bool:
        """Whether it may be us who are partitioned away, not the owner who died: no other live
        frontend of the owner's zone, or routers in the map and none alive. The owner's clients
        may then still be connected to it (a zone partition), so the watch waits for the copy to
        expire unclaimed (the connection's state is then gone) instead of the linger."""
        view = self.node.channels.view
        zone = view.zone_of(owner)
        peers = list(view.peers.values())
        zone_alive = any(
            p.alive and p.role == "frontend" and p.zone == zone and p.node_id != owner for p in peers
        )
        routers = [p for p in peers if p.role == "router"]
        return not zone_alive or (bool(routers) and not any(p.alive for p in routers))

    def _watch_verdict(self, conn: str, watch: CopyWatch, reads: int, verdict: bool | None) -> None:
        watch.asking = False
        node = self.node
        if self.watches.get(conn) is not watch or verdict is None:
            log.info("presence.owner_unconfirmed", connection_id=conn, verdict=verdict)
            return  # ended meanwhile (a discard, a new copy), or asked again at the next sweep
        if watch.reads != reads:
            # A takeover fetched the copy while the others answered: its new owner may not have
            # said so yet, and it holds the members as present (the copy was not marked left).
            # Leaving now would remove a member whose client is back (frontend/simpresence.py
            # resume_races_the_copy_holders_leave); the read restarted the clock: ask again then.
            log.info("presence.copy_claimed_while_asking", connection_id=conn)
            return
        del self.watches[conn]
        if not verdict or conn in node.sessions:  # owned elsewhere, or taken over by us meanwhile
            log.info("presence.owned_elsewhere", connection_id=conn, owner=watch.owner)
            return
        now_ms = node.channels.now_ms
        state = node.ownership.copies.get(now_ms, conn)
        if state is not None and isinstance(state.get("presence"), dict):
            state["presence"] = {**state["presence"], "gone": True}  # a takeover re-enters them

        def then(ok: bool) -> None:
            if not ok:  # a channel's home did not answer: the next sweep asks and leaves again
                watch.dead_since = node.channels.now_ms - self.linger_ms + RETRY_MS
                self.watches.setdefault(conn, watch)

        log.info("presence.owner_dead_leave", connection_id=conn, owner=watch.owner, n=len(watch.members))
        self.emit(now_ms, conn, PresenceAction.LEAVE, watch.members, then)

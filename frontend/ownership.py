"""Ownership: replicate connection state to its secondary, hand it over, adopt it, discard stale copies.

See ``session_copies.py`` for the theory of operation. This is the node-facing half:
it reads and changes the node's sessions, and talks to peers only through the
bus's non-blocking ``push``/``request``. Pure apart from that: times come in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from frontend import peerops as O
from frontend.session import Session, SessionState
from frontend.session_copies import SessionCopies, Tombstones
from kernel.keys import ConnectionKey

if TYPE_CHECKING:
    from frontend.node_parts import NodeParts

log = structlog.get_logger("continuity.frontend")


class Ownership:
    def __init__(self, node: NodeParts) -> None:
        self.node = node
        ttl = node.config.connection_state_ttl_ms + node.config.max_idle_interval_ms
        self.copies = SessionCopies(ttl)
        self.tombstones = Tombstones(ttl)
        # Discards not yet known delivered, re-sent whenever the peer is (again) in the map.
        self.discards: dict[str, dict[str, int]] = {}
        # A secondary forgets a copy not written for ``ttl`` (SessionCopies), so every copy is
        # re-written at least this often, whether or not its connection changed.
        self.refresh_ms = max(1, ttl // 3)
        self._next_refresh = 0
        self._alive_before: frozenset[str] = frozenset()  # frontends alive in the previous map

    # -- owner side ---------------------------------------------------------
    def replicate(self, s: Session) -> None:
        """Write ``s``'s state to its secondary (create, attach, detach, clientId change, cursor batch)."""
        s.dirty = False
        bus = self.node.channels.bus
        if bus is None or s.secondary is None or s.terminal:
            return
        bus.push(s.secondary, O.SessionPut(state=s.to_wire()))

    def reassign_secondaries(self) -> None:
        """After a map change: sessions whose secondary is gone get a live one, and a fresh copy;
        those whose secondary is back in the map (restarted: it holds no copy) write it again.
        Chaos seed 931193163: zone a lost and restarted, fe-b1's connections kept their secondary
        (no other zone to move to) and nothing re-wrote it once it was back; fe-b1 killed 0.6 s
        later left no copy anywhere (80008 within the TTL)."""
        node = self.node
        view = node.channels.view
        alive = frozenset(p.node_id for p in view.frontends() if p.alive)
        back, self._alive_before = alive - self._alive_before, alive
        for s in node.sessions.values():
            if s.terminal:
                continue
            if s.secondary is not None and view.alive(s.secondary):
                if s.secondary in back:
                    self.replicate(s)
                continue
            secondary = node.channels.placement.connection_secondary(s.connection_id, node.node_id)
            if secondary is not None and secondary != s.secondary:
                s.secondary = secondary
                self.replicate(s)

    def refresh_copies(self, now_ms: int) -> None:
        """Re-write every session's copy once per ``refresh_ms``. An idle connection (attached, no
        message, no state change) wrote nothing, so its secondary let the copy expire while the
        client was still connected; the owner's later loss then failed the takeover and the client
        got 80008 and a new connectionId after a sub-second absence (chaos seed 25705, fh-watch)."""
        if now_ms < self._next_refresh:
            return
        self._next_refresh = now_ms + self.refresh_ms
        for s in self.node.sessions.values():
            self.replicate(s)

    def flush_dirty(self) -> None:
        for s in self.node.sessions.values():
            if s.dirty:
                self.replicate(s)

    def adopt(self, now_ms: int, state: dict[str, Any], min_epoch: int) -> Session:
        """Install a taken-over session under a new key and a higher epoch; write its new copy."""
        node = self.node
        conn_id = str(state["id"])
        epoch = max(int(state["epoch"]), min_epoch) + 1
        secondary = node.channels.placement.connection_secondary(conn_id, node.node_id)
        key = node.signer.sign(
            ConnectionKey(owner=node.node_id, secondary=secondary, connection_id=conn_id, epoch=epoch)
        )
        s = Session.from_wire(state, key=key, epoch=epoch, secondary=secondary, now_ms=now_ms)
        old = node.sessions.get(conn_id)
        if old is not None:
            node.drop_session(old)
        node.sessions[conn_id] = s
        expiry = s.expires_at(node.config.connection_state_ttl_ms)
        assert expiry is not None
        heapq.heappush(node._expiry, (expiry, conn_id))
        node.presence.detached(now_ms, s)
        self.copies.drop(conn_id)
        self.replicate(s)
        # Older copies of the connection may sit on other frontends (an older secondary, a drain's
        # leftover): none may leave its presence members on the dead owner's behalf now.
        bus = node.channels.bus
        for peer in node.channels.view.frontends():
            if bus is not None and peer.alive and peer.node_id not in (node.node_id, secondary):
                bus.push(peer.node_id, O.PresenceOwned(connection_id=conn_id, epoch=epoch))
        node.metrics.takeovers.inc()
        log.info("connection.taken_over", connection_id=conn_id, epoch=epoch, secondary=secondary)
        return s

    def closed(self, now_ms: int, s: Session) -> None:
        """The client closed ``s`` (CLOSE): leave a tombstone so no resume or takeover revives it
        from here, and have the secondary drop its copy."""
        self.tombstones.add(now_ms, s.connection_id, None, s.epoch + 1, None)
        self.remember_discard(s.secondary, s.connection_id, s.epoch + 1)

    def remember_discard(self, peer: str | None, conn_id: str, epoch: int) -> None:
        """Tell ``peer`` to drop what it holds of ``conn_id`` below ``epoch``, until it confirms."""
        if peer is None or peer == self.node.node_id:
            return
        self.discards.setdefault(peer, {})[conn_id] = epoch
        self._send_discard(peer, conn_id, epoch)

    def resend_discards(self, alive: Callable[[str], bool]) -> None:
        """Re-send unconfirmed discards to peers in the map (fencing by epoch survives a partition)."""
        for peer, pending in list(self.discards.items()):
            if alive(peer):
                for conn_id, epoch in list(pending.items()):
                    self._send_discard(peer, conn_id, epoch)

    def _send_discard(self, peer: str, conn_id: str, epoch: int) -> None:
        bus = self.node.channels.bus
        if bus is None:
            return

        def confirmed(ok: bool, result: Any) -> None:
            pending = self.discards.get(peer)
            if ok and pending is not None and pending.get(conn_id) == epoch:
                del pending[conn_id]
                if not pending:
                    del self.discards[peer]

        bus.request(peer, O.Discard(connection_id=conn_id, epoch=epoch), confirmed, 2.0)

    # -- requests and pushes from peers ---------------------------------------
    def handle_request(
        self, now_ms: int, src: str, op: O.SessionOp, reply: Callable[[bool, Any], None]
    ) -> None:
        match op:
            case O.SessionFetch(connection_id=conn_id):
                self.node.presence.copy_read(now_ms, conn_id)
                live = self.node.sessions.get(conn_id)
                held = live.epoch if live is not None and not live.terminal else None
                # ``held``: no copy here, but the connection itself, taken over (takeover.py asks
                # for it back when the client's key is the one that takeover replaced).
                copy = self.copies.get(now_ms, conn_id)
                if copy is not None and held is not None and int(copy["epoch"]) < held:
                    copy = None  # older than the connection held here: never revived beside it
                reply(True, {"state": copy, "held": held})
            case O.Handover(connection_id=conn_id, epoch=epoch, key=key):
                if key is not None and self.node.takeover.defer(
                    conn_id,
                    lambda: reply(True, self._hand_over(self.node.channels.now_ms, src, conn_id, epoch, key)),
                ):
                    return  # asked back while our takeover of it is still under way: answer after it
                reply(True, self._hand_over(now_ms, src, conn_id, epoch, key))
            case O.SessionPut(state=state):
                if self._put(now_ms, src, dict(state)):
                    reply(True, None)
                else:
                    reply(False, O.Refused(O.Refusal.STALE, "a newer copy is held"))
            case O.Discard(connection_id=conn_id, epoch=epoch):
                self._discard(now_ms, conn_id, epoch)
                reply(True, None)

    def handle_push(self, now_ms: int, src: str, op: O.SessionOp) -> None:
        match op:
            case O.SessionPut(state=state):
                self._put(now_ms, src, state)
            case O.Discard(connection_id=conn_id, epoch=epoch):
                self._discard(now_ms, conn_id, epoch)
            case _:
                log.warning("peer.unexpected_push", peer=src, op=op.OP)

    def _put(self, now_ms: int, src: str, state: dict[str, Any]) -> bool:
        """Keep ``src``'s copy of a connection, unless we hold the connection itself at a newer
        epoch: its old owner, cut off when we took it over, wrote its stale state to us, its
        secondary, at the heal. Kept, it was served to a late resume with the old key at the old
        owner, which took the connection over a second time, beside us, and re-entered its member
        (chaos seed 475497038: fe-a1's ENTER of both18 while fe-b2 held the connection)."""
        live = self.node.sessions.get(str(state["id"]))
        if live is not None and not live.terminal and live.epoch > int(state["epoch"]):
            return False
        if not self.copies.put(now_ms, state):
            return False
        self.node.presence.copy_put(now_ms, src, state)
        return True

    def _hand_over(
        self, now_ms: int, src: str, conn_id: str, key_epoch: int, key: str | None = None
    ) -> dict[str, Any]:
        """Hand ``conn_id``'s state to ``src`` and leave a tombstone naming it. With ``key`` (a
        reclaim), ``src`` handed it to us and the client came back to it with that older key: it is
        given back only if our takeover replaced exactly that key and the client never spoke with
        the new one (its attempt here was abandoned before CONNECTED reached it). A transport still
        attached does not stop it: the client's return with the replaced key proves that transport
        an orphan, e.g. a comet connect the client had abandoned, which stays attached until its
        'no recv' timeout (chaos seed 1851702012, issue 18: refused, the client got 80008)."""
        node = self.node
        stone = self.tombstones.get(now_ms, conn_id)
        if stone is not None and stone.new_owner is None:
            return {"state": None, "stale": True}  # closed by its client: dead for good
        if stone is not None:
            # Handed over already: the same new owner may ask again; nobody else may take it back.
            return {"state": stone.state if stone.new_owner == src else None, "owner": stone.new_owner}
        s = node.sessions.get(conn_id)
        if s is None or s.terminal:
            return {"state": None}
        if key_epoch < s.epoch and not (key is not None and s.replaced_key == key and not s.key_confirmed):
            return {"state": None, "stale": True}
        state = s.to_wire()
        node.drop_session(s)
        self.tombstones.add(now_ms, conn_id, src, s.epoch + 1, state)
        if key is not None and s.secondary != src:
            self.remember_discard(s.secondary, conn_id, s.epoch + 1)  # src knows not our secondary
        log.info("connection.handed_over", connection_id=conn_id, to=src)
        return {"state": state}

    def _discard(self, now_ms: int, conn_id: str, epoch: int) -> None:
        self.copies.discard(conn_id, epoch)
        self.node.presence.copy_discarded(conn_id, epoch)
        s = self.node.sessions.get(conn_id)
        if s is not None and s.epoch < epoch and s.state is not SessionState.CLOSED:
            log.info("connection.discarded", connection_id=conn_id, epoch=s.epoch, newer=epoch)
            self.node.drop_session(s)

    def expire(self, now_ms: int) -> None:
        self.copies.expire(now_ms)
        self.tombstones.expire(now_ms)

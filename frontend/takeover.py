"""Takeover: the pure steps by which a frontend takes over a connection another node owns.

Theory of operation
-------------------
A resume or recover whose key names another owner reaches this node when the
router could not reach the owner (or the owner is draining). Before the node
answers it, ``prepare`` takes the connection over:

1. A tombstone here (we handed it over, or its client closed it) ends an older
   key: the node answers it in-band (80008), unless the taker gives it back
   (``_reclaim``). A key issued after the handover goes on to step 2.
2. If the owner is alive in our map, it is asked to hand the state over
   (``Handover``); it closes its transports and leaves a tombstone naming us.
3. Otherwise (or if it did not answer) the state comes from our own copy, or
   from the secondaries, then any live frontend (``SessionFetch``).
4. The state is adopted under a higher epoch and a new key; the old owner and
   secondary are told to discard what they hold below it (fencing).

Takeovers of one connection are serialized. A client that retries with the key
a takeover already replaced, before it saw the new one, gets the same
connection back (c257f29). Pure: time comes in; peers are reached through the
non-blocking ``Bus`` and every step continues in its reply callback, so the
trio driver (``cluster.py``) and the simulation (``sim.py``) run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from frontend import peerops as O
from kernel.keys import InvalidKey

if TYPE_CHECKING:
    from frontend.node_parts import NodeParts

log = structlog.get_logger("continuity.cluster")

TAKEOVER_RPC_TIMEOUT_S = 2.0

Params = Mapping[str, str]


class Takeover:
    def __init__(self, node: NodeParts) -> None:
        self.node = node
        self._taking: dict[str, list[Callable[[], None]]] = {}  # conn_id -> prepares waiting for it

    def busy(self) -> bool:
        return bool(self._taking)

    def defer(self, conn_id: str, fn: Callable[[], None]) -> bool:
        """Run ``fn`` once this node's takeover of ``conn_id`` has finished; False (not queued) when
        none is under way."""
        waiting = self._taking.get(conn_id)
        if waiting is None:
            return False
        waiting.append(fn)
        return True

    def prepare(self, now_ms: int, params: Params, done: Callable[[Params], None]) -> None:
        """Take the connection a resume/recover names over if another node owns it; then
        ``done(params)`` with the params to connect with (the key replaced by our new key after a
        takeover, unchanged when no state can be found: the node then answers in-band)."""
        node = self.node
        param = "resume" if params.get("resume") else "recover" if params.get("recover") else None
        if param is None or node.channels.bus is None:
            done(params)
            return
        text = params[param]
        try:
            key = node.signer.verify(text)
        except InvalidKey:
            done(params)
            return
        conn_id = key.connection_id
        if conn_id in self._taking:
            self._taking[conn_id].append(lambda: self.prepare(node.channels.now_ms, params, done))
            return
        current = node.sessions.get(conn_id)
        if current is not None and current.key == text:
            current.key_confirmed = True
            done(params)  # ours already
            return
        if current is not None and current.epoch > key.epoch:
            if current.replaced_key == text and not current.key_confirmed:
                # We took it over for this very key, but the client gave up on that attempt
                # before it saw the new key (e.g. it fell back to another transport): the same
                # connection, no ping-pong (it stays here).
                log.info("connection.takeover_repeated", connection_id=conn_id, epoch=current.epoch)
                done({**params, param: current.key})
                return
            done(params)  # an older key after the client has the new one: never taken back (80008)
            return
        self._taking[conn_id] = []

        def finished(new_key: str | None) -> None:
            waiting = self._taking.pop(conn_id, [])
            out = params
            if new_key is not None:
                taken = node.sessions.get(conn_id)
                if taken is not None and taken.key == new_key:
                    taken.replaced_key, taken.key_confirmed = text, False
                out = {**params, param: new_key}
            done(out)
            for again in waiting:
                again()

        self._take_over(now_ms, key.owner, key.secondary, conn_id, key.epoch, text, finished)

    def _take_over(
        self,
        now_ms: int,
        owner: str,
        secondary: str | None,
        conn_id: str,
        key_epoch: int,
        key_text: str,
        done: Callable[[str | None], None],
    ) -> None:
        node = self.node
        bus = node.channels.bus
        assert bus is not None
        view = node.channels.view
        stone = node.ownership.tombstones.get(now_ms, conn_id)
        if stone is not None and (stone.new_owner is None or key_epoch < stone.epoch):
            self._reclaim(stone.new_owner, conn_id, key_epoch, key_text, done)
            return
        # Else the key is the one the connection got after we handed it over (or later): its owner
        # is the node to take it from, like any other (chaos seed 1956683253: fe-b2 handed both14's
        # connection to fe-a2, fe-a2 was killed, and the client's resume with fe-a2's key reached
        # fe-b2, the secondary holding its copy, whose tombstone answered 80008).

        def adopt(state: dict[str, Any] | None, source: str | None) -> None:
            mine = node.ownership.copies.get(node.channels.now_ms, conn_id)
            newer_copy = mine is not None and int(mine["epoch"]) > key_epoch
            if state is not None and newer_copy and int(state["epoch"]) <= key_epoch:
                # While we waited for that state, another frontend took the connection over for
                # this key and made us its secondary: adopting beside it would make two owners at
                # one epoch (chaos seed 1850085170: fe-b1's SessionFetch answered 2 s late, after
                # the restarted fe-a1 had taken both connections over; fe-b1's copy of them later
                # left their presence members: 30 spurious LEAVEs).
                state = None
            if state is None or int(state["epoch"]) > key_epoch:
                node.metrics.takeover_failures.inc()
                log.info("connection.takeover_failed", connection_id=conn_id, owner=owner)
                done(None)
                return
            if source != owner and owner not in node.channels.refused:
                # A copy, and the owner may live on (out of sight, not refusing connections): what
                # it saw since the copy was written, and may still be numbering, is unknown.
                state = {**state, "from_copy": True}
            s = node.ownership.adopt(node.channels.now_ms, state, key_epoch)
            log.info(
                "connection.takeover", connection_id=conn_id, old_owner=owner, source=source, epoch=s.epoch
            )
            node.ownership.remember_discard(owner, conn_id, s.epoch)
            if secondary != s.secondary:
                node.ownership.remember_discard(secondary, conn_id, s.epoch)
            done(s.key)

        def from_copies() -> None:
            state = node.ownership.copies.get(node.channels.now_ms, conn_id)
            if state is not None and int(state["epoch"]) <= key_epoch:
                adopt(state, node.node_id)
                return
            # No copy, or one of a newer epoch (its owner made us its secondary: a peer may hold the
            # connection, taken over for this very key, ``_newer`` below). The secondaries first;
            # then anyone (a draining owner may have left its copy elsewhere).
            candidates = [secondary, node.channels.placement.connection_secondary(conn_id, owner)]
            candidates += [p.node_id for p in view.frontends()]
            order = list(dict.fromkeys(c for c in candidates if c and c != node.node_id and view.alive(c)))
            ask(order)

        def ask(order: list[str]) -> None:
            if not order:
                adopt(None, None)
                return
            cand, rest = order[0], order[1:]

            def answered(ok: bool, res: Any) -> None:
                state = res.get("state") if ok and isinstance(res, dict) else None
                if isinstance(state, dict) and int(state.get("epoch", 0)) <= key_epoch:
                    adopt(state, cand)
                elif ok and isinstance(res, dict) and _newer(res.get("held"), key_epoch):
                    # ``cand`` took the connection over for this very key, and the client gave up on
                    # that attempt before its CONNECTED arrived; the router sent the retry to the
                    # key's owner, back after a restart with nothing (frontend.sim seed 45 with
                    # --connected-lost: a new connection while ``cand`` held it). Ask for it back.
                    self._reclaim(cand, conn_id, key_epoch, key_text, done)
                else:
                    ask(rest)

            bus.request(cand, O.SessionFetch(connection_id=conn_id), answered, TAKEOVER_RPC_TIMEOUT_S)

        if owner == node.node_id or not view.alive(owner):
            from_copies()
            return

        def handed(ok: bool, res: Any) -> None:
            if ok and isinstance(res, dict):
                if res.get("stale") or (res.get("owner") and res.get("state") is None):
                    done(None)
                    return
                if isinstance(res.get("state"), dict):
                    adopt(res["state"], owner)
                    return
            else:
                log.info("connection.handover_failed", connection_id=conn_id, owner=owner, reason=str(res))
            from_copies()

        bus.request(owner, O.Handover(connection_id=conn_id, epoch=key_epoch), handed, TAKEOVER_RPC_TIMEOUT_S)

    def _reclaim(
        self,
        new_owner: str | None,
        conn_id: str,
        key_epoch: int,
        key_text: str,
        done: Callable[[str | None], None],
    ) -> None:
        """We handed the connection to ``new_owner`` and the client is back here with its older key.
        That happens when the handover's reply never reached the taker in time (a partition's
        healing, a late request served within the skew allowance): the taker adopted the state
        from copies, but the client had given up on that attempt and never saw the new key, so it
        resumes with the old one, and the router sends it to the key's owner, us. Answering 80008
        would give it a new connectionId (and its un-ACKed publishes would be re-sent and numbered
        twice). So we ask the taker for it back; it agrees only if its takeover replaced exactly
        this key and the client never spoke with the new one (chaos seed 25705). Otherwise an old
        key never takes the connection back (no ping-pong): 80008."""
        node = self.node
        bus = node.channels.bus
        assert bus is not None
        if new_owner is None or new_owner == node.node_id:
            done(None)
            return
        # Asked even when our map lists it dead: the bus refuses at once without a link, and a taker
        # that just asked us for the connection reached us while our map had not yet re-admitted it
        # after a partition (frontend.sim seed 347 with --faults 2: zone b cut off, the client in a
        # tunnel; fe-b2 took the connection from its copy, fe-a1 handed it over at the heal, and the
        # client's resume at fe-a1 40 ms later got 80008 while fe-b2 still held it unconfirmed).

        def answered(ok: bool, res: Any) -> None:
            state = res.get("state") if ok and isinstance(res, dict) else None
            if not isinstance(state, dict):
                log.info("connection.reclaim_refused", connection_id=conn_id, owner=new_owner)
                done(None)
                return
            node.ownership.tombstones.drop(conn_id)
            s = node.ownership.adopt(node.channels.now_ms, state, key_epoch)
            log.info("connection.reclaimed", connection_id=conn_id, from_owner=new_owner, epoch=s.epoch)
            done(s.key)

        request = O.Handover(connection_id=conn_id, epoch=key_epoch, key=key_text)
        bus.request(new_owner, request, answered, TAKEOVER_RPC_TIMEOUT_S)


def _newer(held: Any, key_epoch: int) -> bool:
    """A SessionFetch answer's ``held``: the epoch of the live connection the peer holds."""
    return isinstance(held, int) and not isinstance(held, bool) and held > key_epoch

"""Drain: the pure steps by which a frontend leaves the cluster without losing a client or a message.

Theory of operation
-------------------
The driver first marks the node draining in the maps (gossip metadata in ``cluster.py``, the world's
truth in ``sim.py``), so that no router sends it new work and placement names other homes. Then
``Drain`` takes the node through four phases:

1. ``HOMES``: each channel homed here is offered to its next home (``Take``), which pulls the log
   from us; the phase ends when the node holds no home, or at the drain deadline.
2. ``PROPAGATE``: "draining" reaches the routers (a gossip rumour needs a few rounds: this is that
   time, not a guess at a condition), so the clients cut next resume elsewhere.
3. ``CLIENTS``: live clients are cut with a resumable DISCONNECTED; their new owners take the state
   over from us. The phase ends when none of them is here any more, or at the drain deadline.
4. ``COPIES``: every session still here (detached, or not back in time) leaves an acknowledged copy
   (``SessionPut``) on its secondary, else on a live frontend of another zone, else of this zone.
   Every channel copy it holds goes to that channel's next home and replica (``ReplicaSync``,
   ``ChannelService.copies_to_leave``). ``finished()`` is called once each session copy was
   acknowledged or every candidate refused it, and each channel copy was answered. A copy another
   zone acknowledged no longer lives in our zone alone; then the node asks for no grant any more
   and releases its zone's place at the witness unless it still holds zone-only entries
   (``QuorumHomes.leave``): the driver sends that release before it leaves the map.

Pure, like ``takeover.py``: time comes in, peers are reached through the non-blocking ``Bus`` and a
copy continues in its reply callback. The driver calls ``step(now)`` after every input that may end
a phase (a home or a session gone: ``FrontendNode.on_change``) and at ``next_deadline()``; then, once
``finished``, it leaves. The trio driver (``cluster.py``) and the simulation (``simdrain.py``) run
this same code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from frontend import peerops as O
from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.session import Session
from kernel.errors import ErrorCode, ErrorInfo

log = structlog.get_logger("continuity.cluster")

COPY_RPC_TIMEOUT_S = 2.0  # a copy not acknowledged by then is offered to the next candidate


class DrainNode(Protocol):
    """What a drain reads and does on ``FrontendNode``."""

    @property
    def node_id(self) -> str: ...

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def channels(self) -> ChannelService: ...

    @property
    def sessions(self) -> dict[str, Session]: ...

    @property
    def outlets(self) -> dict[str, Any]: ...

    def cut(self, now_ms: int, s: Session, error: ErrorInfo) -> None: ...


class Phase(enum.Enum):
    HOMES = "homes"
    PROPAGATE = "propagate"
    CLIENTS = "clients"
    COPIES = "copies"
    DONE = "done"


class Drain:
    def __init__(
        self, node: DrainNode, now_ms: int, *, propagate_ms: int, finished: Callable[[], None]
    ) -> None:
        self.node = node
        self.deadline_ms = now_ms + int(node.config.drain_timeout_s * 1000)
        self.propagate_ms = propagate_ms
        self.finished = finished
        self.phase = Phase.HOMES
        self._propagated_at = 0
        self._live: set[str] = set()  # the connections cut in phase 3
        self._copies_left = 0
        self.copies_lost = 0
        channels = node.channels
        bus = channels.bus
        assert bus is not None, "a drain needs the peer links"
        for name in sorted(channels.homes):
            target = channels.placement.channel_home(name)
            if target is not None and target != node.node_id:
                bus.push(target, O.Take(channel=name))
        self.step(now_ms)

    def next_deadline(self) -> int | None:
        """When ``step`` must run next even if nothing changes (None: only a reply moves it on)."""
        if self.phase in (Phase.HOMES, Phase.CLIENTS):
            return self.deadline_ms
        if self.phase is Phase.PROPAGATE:
            return self._propagated_at
        return None

    def step(self, now_ms: int) -> None:
        """Move through every phase whose end condition holds at ``now_ms``."""
        node = self.node
        if self.phase is Phase.HOMES and (not node.channels.homes or now_ms >= self.deadline_ms):
            self.phase = Phase.PROPAGATE
            self._propagated_at = now_ms + self.propagate_ms
        if self.phase is Phase.PROPAGATE and now_ms >= self._propagated_at:
            self.phase = Phase.CLIENTS
            self._live = set(node.outlets)
            error = ErrorInfo.of(ErrorCode.DISCONNECTED, "server is draining; resume to continue")
            for conn_id in sorted(self._live):
                s = node.sessions.get(conn_id)
                if s is not None:
                    node.cut(now_ms, s, error)
        if self.phase is Phase.CLIENTS and (
            not self._live & set(node.sessions) or now_ms >= self.deadline_ms
        ):
            self._leave_copies()

    def _leave_copies(self) -> None:
        self.phase = Phase.COPIES
        node = self.node
        view = node.channels.view
        zone = node.config.zone
        remaining = [s for s in node.sessions.values() if not s.terminal]
        logs = node.channels.copies_to_leave()
        self._copies_left = len(remaining) + len(logs)
        for s in remaining:
            candidates = [s.secondary] + [p.node_id for p in view.frontends() if p.zone != zone]
            candidates += [p.node_id for p in view.frontends() if p.zone == zone]
            order = [c for c in dict.fromkeys(candidates) if c and c != node.node_id and view.alive(c)]
            self._put(s.to_wire(), order)
        for peer, op in logs:
            self._leave_log_copy(peer, op)
        if not remaining and not logs:
            self._done()

    def _leave_log_copy(self, peer: str, op: O.ReplicaSync) -> None:
        channels = self.node.channels

        def answered(ok: bool, res: Any) -> None:
            if not ok:  # refused by a home, or a holder of more: nothing to leave there
                reason = res.reason if isinstance(res, O.Refused) else str(res)
                log.info("channel.copy_not_left", channel=op.channel, peer=peer, reason=reason)
            elif channels.view.zone_of(peer) != self.node.config.zone:
                # Another zone holds what we sent: none of it lives in our zone alone any more.
                copy = channels.replicas.get(op.channel)
                if copy is not None and copy.epoch == op.log["epoch"] and copy.last_seq <= op.log["last_seq"]:
                    copy.zone_only = False
            self._copied()

        bus = channels.bus
        assert bus is not None
        bus.request(peer, op, answered, COPY_RPC_TIMEOUT_S)

    def _put(self, state: dict[str, Any], order: list[str]) -> None:
        """Offer ``state`` to ``order[0]``, then to the next candidate while they refuse."""
        if not order:
            self.copies_lost += 1
            log.error("connection.copy_lost", connection_id=state.get("id"))
            self._copied()
            return

        def answered(ok: bool, res: Any) -> None:
            if ok:
                self._copied()
                return
            reason = res.reason if isinstance(res, O.Refused) else str(res)
            log.warning("connection.copy_failed", connection_id=state.get("id"), peer=order[0], reason=reason)
            self._put(state, order[1:])

        bus = self.node.channels.bus
        assert bus is not None
        bus.request(order[0], O.SessionPut(state=state), answered, COPY_RPC_TIMEOUT_S)

    def _copied(self) -> None:
        self._copies_left -= 1
        if self._copies_left == 0:
            self._done()

    def _done(self) -> None:
        if self.phase is not Phase.DONE:
            self.phase = Phase.DONE
            self.node.channels.zone_quorum.leave()  # release our zone's witness place, if done with
            self.finished()

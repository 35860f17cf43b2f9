"""Cluster: runs a frontend as a cluster member (gossip, peer links, takeover, drain), on trio.

The node core stays synchronous; this driver feeds it the cluster map whenever
gossip reports a change, wires the PeerBus to its peer handlers, performs the
one operation that must wait for peers before a client is answered (taking a
connection over on resume), and drains the node on SIGTERM (DESIGN section 5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
import trio

import gossip
from frontend import peerops as O
from frontend.clock import wall_ms
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from frontend.peer import PeerBus, PeerError
from frontend.session import Session
from frontend.witness_client import WitnessClient
from kernel.config import is_wildcard
from kernel.errors import ErrorCode, ErrorInfo
from kernel.membership import ROLE_FRONTEND, view_from_members
from kernel.placement import ClusterView, Peer

log = structlog.get_logger("continuity.cluster")

TAKEOVER_RPC_TIMEOUT_S = 2.0
LOAD_REPORT_S = 1.0
SETTLE_ALONE_S = 3.0


def split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def gossip_profile(name: str) -> gossip.GossipConfig:
    return {
        "local": gossip.GossipConfig.local,
        "lan": gossip.GossipConfig.lan,
        "wan": gossip.GossipConfig.wan,
    }[name]()


def advertised_addresses(
    cfg: FrontendConfig, client_port: int, peer_port: int, admin_port: int | None
) -> dict[str, str]:
    """The gossip metadata's addresses: client and peer at the advertised host; the admin listener
    at its own host (the advertised one if it listens on a wildcard)."""
    advertise = cfg.advertise_host or cfg.host
    out = {"client": f"{advertise}:{client_port}", "peer": f"{advertise}:{peer_port}"}
    if admin_port is not None:
        admin_host = advertise if is_wildcard(cfg.admin_host) else cfg.admin_host
        out["admin"] = f"{admin_host}:{admin_port}"
    return out


class Cluster:
    def __init__(self, node: FrontendNode) -> None:
        self.node = node
        self.config = node.config
        self.bus: PeerBus | None = None
        self.member: gossip.Member | None = None
        self.draining = False
        self._load = -1.0
        self._settle_deadline = 0.0
        self.witness = WitnessClient(node, node.config.cluster_secret)

    # -- running -------------------------------------------------------------
    async def run(
        self,
        client_port: int,
        admin_port: int | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Join the cluster and keep the node's map current until cancelled. The admin listener's
        address (when there is one) is advertised too, for the routers' dashboards."""
        cfg = self.config
        assert cfg.gossip_bind is not None
        bus = self.bus = PeerBus(
            cfg.node_id,
            cfg.secrets,
            on_request=self._on_request,
            on_push=self._on_push,
            on_rejected=lambda reason: self.node.metrics.peer_links_rejected.inc(),
            on_bad_op=lambda reason: self.node.metrics.protocol_errors.labels(transport="peer").inc(),
            on_refused=lambda peer: self.node.channels.mark_down(wall_ms(), peer),
            on_connected=lambda peer: self.node.channels.mark_up(wall_ms(), peer),
        )
        self.node.channels.bus = bus
        self.node.channels.ready = False
        # A lone frontend (no peer ever answers) starts serving channels after this long.
        self._settle_deadline = trio.current_time() + SETTLE_ALONE_S
        async with trio.open_nursery() as nursery:
            peer_port = await nursery.start(bus.serve, cfg.peer_host, cfg.peer_port)
            meta = gossip.Metadata(
                role=ROLE_FRONTEND,
                zone=cfg.zone,
                addresses=advertised_addresses(cfg, client_port, peer_port, admin_port),
                load=0.0,
                state=gossip.ServingState.ACTIVE,
            )
            async with gossip.open_member(
                gossip_profile(cfg.gossip_profile),
                bind=split_address(cfg.gossip_bind),
                seeds=[split_address(s) for s in cfg.seeds],
                name=cfg.node_id,
                metadata=meta,
                secret=cfg.cluster_secret,
            ) as member:
                self.member = member
                self.apply_view()
                nursery.start_soon(self._watch, member)
                nursery.start_soon(self._settle_alone)
                nursery.start_soon(self._report_load, member)
                nursery.start_soon(self.witness.run)
                log.info("cluster.joined", node_id=cfg.node_id, gossip=member.address, peer_port=peer_port)
                task_status.started()
                await trio.sleep_forever()

    def view(self) -> ClusterView:
        assert self.member is not None
        view = view_from_members(self.member.members())
        me = view.peers.get(self.config.node_id)
        if me is not None and self.draining:
            view = view.with_peer(Peer(**{**_peer_fields(me), "active": False}))
        return view

    def apply_view(self) -> None:
        view = self.view()
        channels = self.node.channels
        if not channels.ready and (
            any(p.alive and p.node_id != self.config.node_id for p in view.frontends())
            or trio.current_time() >= self._settle_deadline
        ):
            channels.ready = True
            log.info("cluster.map_settled", frontends=len(view.frontends()))
        assert self.bus is not None
        self.bus.set_addresses(
            {p.node_id: split_address(p.peer_addr) for p in view.frontends() if p.alive and p.peer_addr}
        )
        self.node.apply_view(wall_ms(), view)
        self.witness.poke()

    async def _settle_alone(self) -> None:
        await trio.sleep_until(self._settle_deadline)
        self.apply_view()

    async def _watch(self, member: gossip.Member) -> None:
        async for event in member.events():
            log.info("cluster.member_changed", kind=str(event.kind), member=event.member.name)
            self.apply_view()

    async def _report_load(self, member: gossip.Member) -> None:
        while True:
            await trio.sleep(LOAD_REPORT_S)
            load = float(len(self.node.outlets))
            if load != self._load:
                self._load = load
                await member.update_metadata(load=load)

    # -- peer handlers (bad input from a peer is answered, logged and counted, never fatal) ---
    def _on_request(self, src: str, op: O.PeerOp, reply: Any) -> None:
        self.node.handle_peer_request(wall_ms(), src, op, reply)

    def _on_push(self, src: str, op: O.PeerOp) -> None:
        self.node.handle_peer_push(wall_ms(), src, op)

    # -- takeover ---------------------------------------------------------------
    async def prepare(self, params: Mapping[str, str]) -> Mapping[str, str]:
        """Before a resume/recover is answered: take the connection over if another node owns it
        (``takeover.py``, pure steps; this only waits for them)."""
        done = trio.Event()
        box: list[Mapping[str, str]] = []

        def finished(out: Mapping[str, str]) -> None:
            box.append(out)
            done.set()

        self.node.takeover.prepare(wall_ms(), params, finished)
        await done.wait()
        return box[0]

    # -- drain --------------------------------------------------------------------
    async def drain(self) -> None:
        """SIGTERM: stop taking work, hand off homes, move clients, leave copies, then leave."""
        node = self.node
        member, bus = self.member, self.bus
        if member is None or bus is None:
            return
        deadline = trio.current_time() + self.config.drain_timeout_s
        self.draining = node.presence.draining = True
        log.info("frontend.draining", connections=len(node.sessions), homes=len(node.channels.homes))
        await member.update_metadata(state=gossip.ServingState.DRAINING)
        self.apply_view()
        # 1. Channel homes go to their next homes, which pull the logs from us.
        for name in list(node.channels.homes):
            target = node.channels.placement.channel_home(name)
            if target is not None and target != node.node_id:
                bus.push(target, O.Take(channel=name))
        await self._wait_until(lambda: not node.channels.homes, deadline)
        # 2. Let "draining" reach the routers, so that the clients we cut next resume elsewhere
        #    (a rumour needs a few gossip rounds; this is that time, not a guess at a condition).
        await trio.sleep(2 * member.config.leave_propagate_time)
        # 3. Live clients reconnect (resumably); their new owners take the state over from us.
        now = wall_ms()
        live = set(node.outlets)
        for conn_id in live:
            node.cut(
                now,
                node.sessions[conn_id],
                ErrorInfo.of(ErrorCode.DISCONNECTED, "server is draining; resume to continue"),
            )
        await self._wait_until(lambda: not live & set(node.sessions), deadline)
        # 4. Whatever is still here (detached, or not back in time) leaves an acknowledged copy.
        async with trio.open_nursery() as nursery:
            for s in list(node.sessions.values()):
                if not s.terminal:
                    nursery.start_soon(self._leave_copy, s)
        log.info(
            "frontend.drained",
            remaining_connections=len(node.sessions),
            remaining_homes=len(node.channels.homes),
        )
        await member.leave()

    async def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        """Wait, up to ``deadline``, until ``done()`` holds; re-checked whenever the node reports a change."""
        with trio.move_on_at(deadline):
            while not done():
                changed = trio.Event()
                self.node.on_change = self.node.channels.on_change = changed.set
                await changed.wait()
        self.node.on_change = self.node.channels.on_change = _nothing

    async def _leave_copy(self, s: Session) -> None:
        """Put ``s``'s state on its secondary, or on any live frontend of another zone, acknowledged."""
        assert self.bus is not None
        node = self.node
        view = node.channels.view
        zone = self.config.zone
        candidates = [s.secondary] + [p.node_id for p in view.frontends() if p.zone != zone]
        candidates += [p.node_id for p in view.frontends() if p.zone == zone]
        state = s.to_wire()
        for peer in dict.fromkeys(c for c in candidates if c and c != node.node_id and view.alive(c)):
            try:
                await self.bus.call(peer, O.SessionPut(state=state), TAKEOVER_RPC_TIMEOUT_S)
                return
            except PeerError as exc:
                log.warning("connection.copy_failed", connection_id=state["id"], peer=peer, reason=str(exc))
        log.error("connection.copy_lost", connection_id=state["id"])


def _nothing() -> None:
    return None


def _peer_fields(p: Peer) -> dict[str, Any]:
    return {f: getattr(p, f) for f in Peer.__dataclass_fields__}

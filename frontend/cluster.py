"""Cluster: runs a frontend as a cluster member (gossip, peer links, takeover, drain), on trio.

The node core stays synchronous; this driver feeds it the cluster map whenever
gossip reports a change, wires the PeerBus to its peer handlers, performs the
one operation that must wait for peers before a client is answered (taking a
connection over on resume), and drains the node on SIGTERM (DESIGN section 5).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import structlog
import trio

import gossip
from frontend import peerops as O
from frontend.clock import wall_ms
from frontend.config import FrontendConfig
from frontend.drain import Drain
from frontend.node import FrontendNode
from frontend.peer import PeerBus
from frontend.witness_client import WitnessClient
from kernel.config import is_wildcard
from kernel.membership import ROLE_FRONTEND, silent_zones, view_from_members
from kernel.placement import ClusterView, Peer

log = structlog.get_logger("continuity.cluster")

LOAD_REPORT_S = 1.0
SETTLE_ALONE_S = 3.0
# A zone every member of which gossip has suspected this long (kernel.membership.silent_zones) is
# out of sight before gossip declares its members dead: with ``lan``, a zone cut off was seen dead
# after 10.0 s (p50; 15 s max), silent after 5.9 s (p50; 11.1 s max), with no more false alarms
# than false deaths when both of a zone's frontends stall together (bench/gossip_sim.py,
# ``zone_loss``). The ``local`` profile declares deaths within the 10 s target already (2.4 s p50,
# 4.4 s max) and runs on loaded machines where whole-machine stalls are common: off there.
ZONE_SILENCE_S = {"lan": 3.0}


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
        self._silent: set[str] = set()
        self.witness = WitnessClient(node, node.config.cluster_secret)
        node.channels.witness_poke = self.witness.poke

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
            on_input=lambda: self.node.wake(),
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
                nursery.start_soon(self._watch, member, nursery)
                nursery.start_soon(self._settle_alone)
                nursery.start_soon(self._report_load, member)
                nursery.start_soon(self.witness.run)
                log.info("cluster.joined", node_id=cfg.node_id, gossip=member.address, peer_port=peer_port)
                task_status.started()
                await trio.sleep_forever()

    def view(self) -> ClusterView:
        assert self.member is not None
        members = self.member.members()
        view = view_from_members(members)
        hold = ZONE_SILENCE_S.get(self.config.gossip_profile)
        silent = set() if hold is None else silent_zones(
            members, me=self.config.node_id, now=trio.current_time(), hold=hold,
            recent=self.member.config.gossip_to_dead_time,
        )  # fmt: skip
        if silent != self._silent:
            log.warning("zone.silent", zones=sorted(silent), before=sorted(self._silent), hold_s=hold)
            self._silent = silent
        for p in view.frontends():
            if p.zone in silent and p.alive:  # placement and the quorum see the zone gone
                view = view.with_peer(dataclasses.replace(p, alive=False))
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
        self.node.wake()
        self.witness.poke()

    async def _settle_alone(self) -> None:
        await trio.sleep_until(self._settle_deadline)
        self.apply_view()

    async def _watch(self, member: gossip.Member, nursery: trio.Nursery) -> None:
        hold = ZONE_SILENCE_S.get(self.config.gossip_profile)
        async for event in member.events():
            log.info("cluster.member_changed", kind=str(event.kind), member=event.member.name)
            self.apply_view()
            if hold is not None and event.kind == gossip.EventKind.SUSPECT:
                nursery.start_soon(self._look_again, hold)  # its zone may be silent by then

    async def _look_again(self, after_s: float) -> None:
        await trio.sleep(after_s + 0.01)
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
        self.node.wake()
        await done.wait()
        return box[0]

    # -- drain --------------------------------------------------------------------
    async def drain(self) -> None:
        """SIGTERM: stop taking work, hand off homes, move clients, leave copies, then leave."""
        node = self.node
        member, bus = self.member, self.bus
        if member is None or bus is None:
            return
        self.draining = node.presence.draining = True
        log.info("frontend.draining", connections=len(node.sessions), homes=len(node.channels.homes))
        await member.update_metadata(state=gossip.ServingState.DRAINING)
        self.apply_view()
        # Homes handed over, clients cut and copies left by the pure steps of frontend/drain.py;
        # this waits for them: at their deadlines, or when a home or a session goes away.
        finished = trio.Event()
        changed = trio.Event()

        def note_change() -> None:
            changed.set()

        def done() -> None:
            finished.set()
            changed.set()

        propagate_ms = int(2 * member.config.leave_propagate_time * 1000)
        self.node.on_change = self.node.channels.on_change = note_change
        try:
            drain = Drain(node, wall_ms(), propagate_ms=propagate_ms, finished=done)
            node.wake()
            while not finished.is_set():
                due = drain.next_deadline()
                with trio.move_on_after(math.inf if due is None else max(0, due - wall_ms()) / 1000):
                    await changed.wait()
                changed = trio.Event()
                drain.step(wall_ms())
                node.wake()
        finally:
            self.node.on_change = self.node.channels.on_change = _nothing
        log.info(
            "frontend.drained",
            remaining_connections=len(node.sessions),
            remaining_homes=len(node.channels.homes),
            copies_lost=drain.copies_lost,
        )
        await self.witness.leave()  # release our zone's witness place before we leave the map
        await member.leave()

def _nothing() -> None:
    return None


def _peer_fields(p: Peer) -> dict[str, Any]:
    return {f: getattr(p, f) for f in Peer.__dataclass_fields__}

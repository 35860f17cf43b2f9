"""From gossip's member list to the ClusterView that placement and routing read.

Both daemons are gossip members; a frontend's metadata carries
``addresses = {"client": "host:port", "peer": "host:port"}`` (plus ``"admin"`` when the node has
an admin listener). The member's
gossip name is its node id. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gossip import MemberInfo, MemberState, ServingState
from kernel.placement import ClusterView, Peer

ROLE_FRONTEND = "frontend"
ROLE_ROUTER = "router"


def peer_from_member(info: MemberInfo) -> Peer:
    meta = info.metadata
    return Peer(
        node_id=info.name,
        role=meta.role,
        zone=meta.zone,
        client_addr=meta.addresses.get("client", ""),
        peer_addr=meta.addresses.get("peer", ""),
        admin_addr=meta.addresses.get("admin", ""),
        alive=info.state in (MemberState.ALIVE, MemberState.SUSPECT),
        active=meta.state == ServingState.ACTIVE,
        load=meta.load,
        incarnation=info.incarnation,
        status=info.state.name.lower(),
    )


def view_from_members(members: Iterable[MemberInfo]) -> ClusterView:
    return ClusterView({m.name: peer_from_member(m) for m in members})


def _zone(info: MemberInfo) -> str:
    return info.metadata.zone


def silent_zones(
    members: Iterable[MemberInfo],
    *,
    me: str,
    now: float,
    hold: float,
    recent: float = 30.0,
    zone_of: Callable[[MemberInfo], str] = _zone,
) -> set[str]:
    """The other zones gossip has lost as a whole: no member of the zone is alive, at least one is
    suspect (direct and indirect probes failed), every suspicion is at least ``hold`` seconds old,
    and the zone had at least two members (a member declared dead within ``recent`` seconds counts)
    -- while some member outside the zone (not ``me``) is alive and unsuspected. Gossip declares a
    suspect dead only after its suspicion timeout (4 s to 24 s with ``lan``), so a zone cut off (a
    partition, a power cut) is seen this way several seconds sooner. One member's stall never counts
    (two are needed), and a member that lost the network itself hears nobody else either. See
    docs/architecture.md, "Zone quorum" (liveness). Pure."""
    mine = ""
    zones: dict[str, list[MemberInfo]] = {}
    for m in members:
        if m.name == me:
            mine = zone_of(m)
        elif m.state in (MemberState.ALIVE, MemberState.SUSPECT) or (
            m.state == MemberState.DEAD and m.since >= now - recent
        ):
            zones.setdefault(zone_of(m), []).append(m)
    out = set()
    for zone, ms in zones.items():
        suspects = [m for m in ms if m.state == MemberState.SUSPECT]
        if zone == mine or len(ms) < 2 or not suspects or any(m.state == MemberState.ALIVE for m in ms):
            continue
        if max(m.since for m in suspects) > now - hold:
            continue
        if any(m.state == MemberState.ALIVE for z, others in zones.items() if z != zone for m in others):
            out.add(zone)
    return out


def view_to_json(view: ClusterView) -> list[dict[str, object]]:
    """The map as ``GET /cluster`` shows it."""
    return [
        {
            "node_id": p.node_id,
            "role": p.role,
            "zone": p.zone,
            "status": p.status,
            "serving": "active" if p.active else "draining",
            "load": p.load,
            "incarnation": p.incarnation,
            "client_addr": p.client_addr,
            "peer_addr": p.peer_addr,
            "admin_addr": p.admin_addr,
        }
        for p in sorted(view.peers.values(), key=lambda p: (p.role, p.node_id))
    ]

"""From gossip's member list to the ClusterView that placement and routing read.

Both daemons are gossip members; a frontend's metadata carries
``addresses = {"client": "host:port", "peer": "host:port"}`` (plus ``"admin"`` when the node has
an admin listener). The member's
gossip name is its node id. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

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

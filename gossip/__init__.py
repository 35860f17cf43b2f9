"""gossip: SWIM + Lifeguard cluster membership on trio.

    async with gossip.open_member(gossip.GossipConfig.lan(), seeds=[("10.0.0.1", 7946)]) as member:
        async for event in member.events():
            print(event.kind, event.member.name)

The protocol core is `SwimCore` (pure: no trio, socket or clock); `open_member` drives it over UDP/TCP
or over an in-memory `MemoryNetwork`.
"""

from .config import GossipConfig
from .core import Counters, Outgoing, SwimCore
from .errors import GossipError, LocalProtocolError, RemoteProtocolError
from .member import Member, open_member
from .members import EventKind, MemberEvent, MemberInfo
from .memory import MemoryNetwork, MemoryTransport
from .transport import Received, Transport, UdpTcpTransport, open_udp_tcp_transport
from .wire import (
    MAX_DATAGRAM_BYTES,
    MAX_METADATA_BYTES,
    PROTOCOL_VERSION,
    Address,
    Keyring,
    MemberState,
    Metadata,
    ServingState,
)

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "MAX_METADATA_BYTES",
    "PROTOCOL_VERSION",
    "Address",
    "Counters",
    "EventKind",
    "GossipConfig",
    "GossipError",
    "Keyring",
    "LocalProtocolError",
    "Member",
    "MemberEvent",
    "MemberInfo",
    "MemberState",
    "MemoryNetwork",
    "MemoryTransport",
    "Metadata",
    "Outgoing",
    "Received",
    "RemoteProtocolError",
    "ServingState",
    "SwimCore",
    "Transport",
    "UdpTcpTransport",
    "open_member",
    "open_udp_tcp_transport",
]

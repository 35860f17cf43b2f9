"""The peer links as the cluster core sees them.

``Bus`` is what ``ChannelService`` and its home, quorum and publishing parts send peer operations
through (``frontend/peer.py``'s ``PeerBus`` implements it over TCP, ``frontend/simnet.py``'s ``SimBus``
over the simulation's memory network). It lives in this leaf module so that those parts annotate
against it without importing ``channels.py``, which imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from frontend import peerops as O


class Bus(Protocol):
    """What the service needs from the peer links (PeerBus implements it)."""

    def request(
        self,
        peer: str,
        op: O.PeerOp,
        on_reply: Callable[[bool, Any], None],
        timeout_s: float = ...,
    ) -> None: ...

    def push(self, peer: str, op: O.PeerOp) -> bool: ...

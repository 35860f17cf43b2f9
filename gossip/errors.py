"""Errors raised by the gossip package.

`RemoteProtocolError` means a peer (or an attacker) sent bytes we refuse: the driver logs, counts and drops
them. `LocalProtocolError` means this process misused the API (our bug), e.g. oversized metadata.
"""

from __future__ import annotations


class GossipError(Exception):
    """Base class of every error raised by the gossip package."""


class RemoteProtocolError(GossipError):
    """A received packet or stream is malformed, unauthenticated, oversized or of an unknown version.

    `reason` is a short counter name (``malformed``, ``unauthenticated``, ``oversized``, ``version``)
    so the receiver can count drops by cause.
    """

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class LocalProtocolError(GossipError):
    """The local application asked for something the protocol cannot carry (our bug, not the peer's)."""

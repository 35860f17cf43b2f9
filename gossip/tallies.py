"""The plain records of a SWIM member's core (``core.py``): what it sends, what it counts, and its
probes and relayed probes in flight. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from .wire import Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes to send to `dst`: a datagram, or with `stream=True` one message over a TCP connection."""

    dst: Address
    data: bytes
    stream: bool = False


@dataclass(slots=True, kw_only=True)
class Counters:
    """Traffic and drop counters of one member (exposed as `Member.counters`)."""

    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    streams_sent: int = 0
    streams_received: int = 0
    dropped_malformed: int = 0
    dropped_unauthenticated: int = 0
    dropped_oversized: int = 0
    dropped_version: int = 0
    probes: int = 0
    probe_failures: int = 0
    refutations: int = 0

    @property
    def dropped(self) -> int:
        """Return the number of packets dropped for any reason."""
        return (
            self.dropped_malformed
            + self.dropped_unauthenticated
            + self.dropped_oversized
            + self.dropped_version
        )


@dataclass(slots=True, kw_only=True)
class Probe:
    target: str
    seq: int
    timeout_at: float  # send indirect pings if no ack by then
    indirect_sent: bool = False
    acked: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True, kw_only=True)
class Relay:
    """An indirect ping we are doing on behalf of `requester`."""

    requester: Address
    their_seq: int
    nack: bool
    deadline: float

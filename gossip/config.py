"""`GossipConfig`: every timing and size knob of a member, with memberlist-derived profiles."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import formulas


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipConfig:
    """Timing and fan-out of one member. The defaults are memberlist's LAN values (`GossipConfig.lan()`).

    Times are float seconds. Use a profile (`lan()`, `local()`, `wan()`) and `dataclasses.replace` to
    tune a field; every field is validated in `__post_init__`.
    """

    # Seconds between two probes (one member probed per interval), before Lifeguard scaling.
    probe_interval: float = 1.0
    # Seconds to wait for a direct ack before asking `indirect_checks` members to probe for us.
    probe_timeout: float = 0.5
    # k: members asked to send an indirect ping (ping-req) when the direct ping got no ack.
    indirect_checks: int = 3
    # Minimum suspicion timeout = suspicion_mult * max(1, log10 N) * probe_interval.
    suspicion_mult: int = 4
    # Lifeguard: a suspicion starts at suspicion_max_mult * minimum and shrinks with confirmations.
    suspicion_max_mult: int = 6
    # Each rumour is piggybacked retransmit_mult * ceil(log10(N + 1)) times.
    retransmit_mult: int = 4
    # Seconds between two gossip rounds (rumours sent to `gossip_nodes` random members).
    gossip_interval: float = 0.2
    # Members a gossip round sends to.
    gossip_nodes: int = 3
    # Seconds after its death during which a dead member still receives gossip (it may be alive).
    gossip_to_dead_time: float = 30.0
    # Seconds between two full-state exchanges over TCP with a random member (scaled above 32 members).
    push_pull_interval: float = 30.0
    # Seconds between two attempts to re-contact a seed not known alive or a recently dead member,
    # by push-pull, so that a healed partition re-merges.
    reconnect_interval: float = 10.0
    # Seconds a dead or left member is kept (and re-contacted, if dead) before being forgotten.
    dead_retention: float = 3600.0
    # Lifeguard: the local health score ranges 0 .. awareness_max_multiplier - 1 and multiplies the
    # probe interval and timeout by (score + 1).
    awareness_max_multiplier: int = 8
    # Lifeguard on (local health, suspicion max->min with confirmations, nacks); off gives plain SWIM
    # with memberlist's pre-Lifeguard fixed suspicion timeout, for comparison.
    lifeguard: bool = True
    # Seconds allowed for a TCP connect + push-pull write or read.
    stream_timeout: float = 10.0
    # Seconds `leave()` waits for the leave rumour to be sent before returning.
    leave_propagate_time: float = 1.0

    def __post_init__(self) -> None:
        _check(0.001 <= self.probe_interval <= 600, "probe_interval must be in [0.001, 600] s")
        _check(
            0.0005 <= self.probe_timeout < self.probe_interval,
            "probe_timeout must be in [0.0005 s, probe_interval)",
        )
        _check(0 <= self.indirect_checks <= 16, "indirect_checks must be in [0, 16]")
        _check(1 <= self.suspicion_mult <= 100, "suspicion_mult must be in [1, 100]")
        _check(1 <= self.suspicion_max_mult <= 100, "suspicion_max_mult must be in [1, 100]")
        _check(1 <= self.retransmit_mult <= 100, "retransmit_mult must be in [1, 100]")
        _check(0.001 <= self.gossip_interval <= 600, "gossip_interval must be in [0.001, 600] s")
        _check(1 <= self.gossip_nodes <= 64, "gossip_nodes must be in [1, 64]")
        _check(0 <= self.gossip_to_dead_time <= 86400, "gossip_to_dead_time must be in [0, 86400] s")
        _check(0.01 <= self.push_pull_interval <= 86400, "push_pull_interval must be in [0.01, 86400] s")
        _check(0.01 <= self.reconnect_interval <= 86400, "reconnect_interval must be in [0.01, 86400] s")
        _check(0 <= self.dead_retention <= 30 * 86400, "dead_retention must be in [0, 2592000] s")
        _check(1 <= self.awareness_max_multiplier <= 64, "awareness_max_multiplier must be in [1, 64]")
        _check(0.01 <= self.stream_timeout <= 600, "stream_timeout must be in [0.01, 600] s")
        _check(0 <= self.leave_propagate_time <= 60, "leave_propagate_time must be in [0, 60] s")

    @classmethod
    def lan(cls) -> GossipConfig:
        """memberlist's DefaultLANConfig: probe 1 s, timeout 500 ms, 3 indirect checks, suspicion mult 4
        and max mult 6, gossip every 200 ms to 3, push-pull every 30 s."""
        return cls()

    @classmethod
    def local(cls) -> GossipConfig:
        """Fast timings for tests and a cluster on one machine: every interval 5x shorter than LAN,
        but a suspicion that lasts 2 s to 6 s for up to 10 members (suspicion_mult 10, max_mult 3).

        Processes on one loaded machine stall for a second or more. With LAN's multipliers (0.8 s
        once two others confirm, for 6 members), a frontend that stalled while one or both routers
        were killed and restarted was declared dead in 8 of 40 simulated runs for a 1 s stall and
        22 of 40 for 1.5 s, and in the chaos runs a live frontend lost its homes to a second node;
        with these, 1 and 8 of 40, for a crash detected by every member in 2.35 s (p50) instead of
        1.16 s (bench/gossip_sim.py, ``false_positives_router_restart``).
        """
        return dataclasses.replace(
            cls.lan(),
            probe_interval=0.2,
            probe_timeout=0.1,
            suspicion_mult=10,
            suspicion_max_mult=3,
            gossip_interval=0.05,
            gossip_to_dead_time=6.0,
            push_pull_interval=6.0,
            reconnect_interval=1.0,
            dead_retention=120.0,
            stream_timeout=1.0,
            leave_propagate_time=0.3,
        )

    @classmethod
    def wan(cls) -> GossipConfig:
        """memberlist's DefaultWANConfig: probe 5 s, timeout 3 s, suspicion mult 6, gossip every 500 ms
        to 4, push-pull every 60 s, TCP timeout 30 s."""
        return dataclasses.replace(
            cls.lan(),
            probe_interval=5.0,
            probe_timeout=3.0,
            suspicion_mult=6,
            gossip_interval=0.5,
            gossip_nodes=4,
            gossip_to_dead_time=60.0,
            push_pull_interval=60.0,
            reconnect_interval=30.0,
            stream_timeout=30.0,
        )

    def suspicion_min(self, n: int) -> float:
        """Return the minimum suspicion timeout for a cluster of `n` members, in seconds."""
        return formulas.suspicion_timeout(self.suspicion_mult, n, self.probe_interval)

    def suspicion_max(self, n: int) -> float:
        """Return the maximum (unconfirmed) suspicion timeout for `n` members, in seconds."""
        return self.suspicion_max_mult * self.suspicion_min(n)

    def detection_bound(self, n: int) -> float:
        """Return the worst-case seconds for all of `n` members to mark a crashed one dead
        (see `formulas.detection_bound`)."""
        return formulas.detection_bound(
            n=n,
            probe_interval=self.probe_interval,
            probe_timeout=self.probe_timeout,
            suspicion_mult=self.suspicion_mult,
            suspicion_max_mult=self.suspicion_max_mult if self.lifeguard else 1,
            retransmit_mult=self.retransmit_mult,
            gossip_interval=self.gossip_interval,
        )

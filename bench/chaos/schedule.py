"""The seeded fault schedule of a chaos run, and which faults a violation implicates. Pure.

A schedule is a list of :class:`Fault`, each with a planned start (seconds after the load started),
a duration and a target. Faults are grouped by what they disturb (``group``): the driver runs each
group's faults one after the other and different groups concurrently, so faults overlap and mix
while the cluster never loses more than one frontend at once, which is the failure model the design
promises to survive (DESIGN 7.1: "while the channel's home or replica survives"):

* ``cluster``: ``fe_kill`` (kill -9, restart after ``duration``), ``fe_drain`` (SIGTERM, wait for
  the exit, restart after ``duration``), ``partition_fe`` (one frontend cut off from every other
  daemon for ``duration``, then healed), ``partition_zone`` (zone a cut off from zone b and the
  routers); after each, the driver waits for the cluster to settle before the next;
  ``zone_loss`` (every frontend of zone ``target`` killed together with -9, all restarted after
  ``duration``); a drain or a partition may carry ``router`` (a router, or ``"both"``): that router
  is killed as soon as the fault ends (the drained node restarted, or the partition healed), while
  the cluster is settling, and restarted ``router_down`` seconds later;
* ``router``: ``router_kill`` (kill -9 of a router, restart after ``duration``);
* ``client:<name>``: ``tunnel_cut`` (the client's TCP path reset for ``duration``; exactly one cut,
  ``long``, outlasts the connection-state TTL plus the idle interval) and ``slow_consumer`` (the
  client stops reading for ``duration`` while a burst is published to its channel).

``generate`` is deterministic in its arguments; ``implicated`` picks the faults that can explain a
violation seen at time ``t``, for the minimized reproduction (``--only``). The zone losses and the
router kills while settling are drawn last, from a second generator seeded by the same seed
(``_patterns``): they turn some ``fe_kill`` into a ``zone_loss`` and give some drains and partitions a
``router``, so a seed's faults keep the times, targets and durations they had before these patterns
existed (``patterns=False`` gives exactly that earlier schedule).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

CLUSTER_KINDS = ("fe_kill", "fe_drain", "partition_fe", "partition_zone", "zone_loss")
KINDS = (*CLUSTER_KINDS, "router_kill", "tunnel_cut", "slow_consumer")
# Relative frequency of each kind beyond the first one of each.
WEIGHTS = {
    "fe_kill": 14,
    "fe_drain": 8,
    "partition_fe": 6,
    "partition_zone": 5,
    "router_kill": 10,
    "tunnel_cut": 45,
    "slow_consumer": 7,
}
# Planned seconds a cluster fault occupies (the fault, the restart and the settle), used to spread
# the other faults over the same span.
CLUSTER_SLOT_S = 9.0
# A violation is blamed on a fault that started before it and ended at most this long before it.
BLAME_AFTER_S = 15.0
# The new patterns: one zone loss per ZONE_LOSS_EVERY faults, one router kill while settling per
# ROUTER_SETTLE_EVERY faults (at least one of each when the schedule has room for them).
ZONE_LOSS_EVERY = 40
ROUTER_SETTLE_EVERY = 20
PATTERN_SALT = 0x5EED_2026


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    index: int
    kind: str
    target: str  # a frontend, a router, a client name, or "a" (the zone) for partition_zone
    at: float  # planned start, seconds after the load started
    duration: float  # seconds down / cut / partitioned / held
    long: bool = False  # the one tunnel cut that outlasts the connection-state TTL
    router: str | None = None  # drain/partition: kill this router ("both": every one) as it ends
    router_down: float = 0.0  # seconds that router stays down

    @property
    def group(self) -> str:
        if self.kind in CLUSTER_KINDS:
            return "cluster"
        if self.kind == "router_kill":
            return "router"
        return f"client:{self.target}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """What faults may hit: names of the daemons and clients of the run."""

    frontends: Sequence[str]
    isolatable: Sequence[str]  # frontends that can be partitioned alone (empty: no netns)
    zone_partition: bool  # zone a can be cut off from zone b
    routers: Sequence[str]
    clients: Sequence[str]  # clients whose tunnel may be cut
    slow: Sequence[str]  # clients that may become slow consumers
    long_cut: Sequence[str]  # clients that may get the long cut
    zones: Mapping[str, Sequence[str]] = field(default_factory=dict)  # zone -> its frontends


def _duration(kind: str, rng: random.Random, ttl_s: float) -> float:
    """Seconds for one fault of ``kind``; tunnel cuts stay below the TTL (the long one is apart)."""
    match kind:
        case "fe_kill":
            return rng.uniform(0.5, 4.0)
        case "fe_drain":
            return rng.uniform(0.2, 2.0)
        case "zone_loss":
            return rng.uniform(2.0, 8.0)
        case "partition_fe" | "partition_zone":
            return rng.uniform(3.0, 8.0)
        case "router_kill":
            return rng.uniform(0.3, 3.0)
        case "tunnel_cut":
            return rng.uniform(0.1, min(10.0, ttl_s * 0.8))
        case "slow_consumer":
            return rng.uniform(2.0, 6.0)
    raise ValueError(f"unknown fault kind {kind!r}")


def kinds_for(targets: Targets) -> list[str]:
    """The fault kinds these targets allow."""
    out = []
    for kind in KINDS:
        if kind == "partition_fe" and not targets.isolatable:
            continue
        if kind == "partition_zone" and not targets.zone_partition:
            continue
        if kind == "slow_consumer" and not targets.slow:
            continue
        if kind == "zone_loss":
            continue  # only ever made from an fe_kill (_patterns)
        out.append(kind)
    return out


def generate(
    seed: int, count: int, targets: Targets, *, ttl_s: float, long_cut_s: float, patterns: bool = True
) -> list[Fault]:
    """``count`` faults: at least one of every allowed kind (when ``count`` allows), exactly one
    long tunnel cut of ``long_cut_s`` (> the TTL), the rest drawn by WEIGHTS; in planned order.
    With ``patterns``, some kills become zone losses and some drains and partitions end with a
    router kill (``_patterns``)."""
    faults = _base(seed, count, targets, ttl_s=ttl_s, long_cut_s=long_cut_s)
    return _patterns(seed, faults, targets) if patterns else faults


def _patterns(seed: int, faults: list[Fault], targets: Targets) -> list[Fault]:
    rng = random.Random(seed ^ PATTERN_SALT)
    out = list(faults)
    kills = [i for i, f in enumerate(out) if f.kind == "fe_kill"]
    zones = sorted(z for z, members in targets.zones.items() if members)
    if len(zones) >= 2 and kills:
        for i in rng.sample(kills, min(len(kills), max(1, len(out) // ZONE_LOSS_EVERY))):
            zone = next(z for z in zones if out[i].target in targets.zones[z])
            out[i] = replace(out[i], kind="zone_loss", target=zone, duration=round(rng.uniform(2.0, 8.0), 3))
    settling = [i for i, f in enumerate(out) if f.kind in ("fe_drain", "partition_fe", "partition_zone")]
    if targets.routers and settling:
        for i in rng.sample(settling, min(len(settling), max(1, len(out) // ROUTER_SETTLE_EVERY))):
            router = (
                rng.choice([*targets.routers, "both"]) if len(targets.routers) > 1 else targets.routers[0]
            )
            out[i] = replace(out[i], router=router, router_down=round(rng.uniform(0.3, 3.0), 3))
    return out


def _base(seed: int, count: int, targets: Targets, *, ttl_s: float, long_cut_s: float) -> list[Fault]:
    """The schedule as it was before the zone-loss and router-while-settling patterns."""
    if count < 1:
        raise ValueError("count must be >= 1")
    rng = random.Random(seed)
    allowed = kinds_for(targets)
    kinds: list[str] = ["tunnel_cut"]  # the long one
    kinds += allowed[: max(0, count - 1)]
    while len(kinds) < count:
        kinds.append(rng.choices(allowed, weights=[WEIGHTS[k] for k in allowed])[0])
    order = list(range(count))
    rng.shuffle(order)
    kinds = [kinds[i] for i in order]
    long_slot = order.index(0)

    n_cluster = sum(1 for k in kinds if k in CLUSTER_KINDS)
    span = max(30.0, n_cluster * CLUSTER_SLOT_S)
    cluster_at = [i * span / max(1, n_cluster) + rng.uniform(0, 1.0) for i in range(n_cluster)]
    faults = []
    for i, kind in enumerate(kinds):
        long = i == long_slot
        if kind in CLUSTER_KINDS:
            at = cluster_at.pop(0)
        else:
            at = rng.uniform(0, span)
        match kind:
            case "fe_kill" | "fe_drain":
                target = rng.choice(list(targets.frontends))
            case "partition_fe":
                target = rng.choice(list(targets.isolatable))
            case "partition_zone":
                target = "a"
            case "router_kill":
                target = rng.choice(list(targets.routers))
            case "slow_consumer":
                target = rng.choice(list(targets.slow))
            case _:
                target = rng.choice(list(targets.long_cut if long else targets.clients))
        duration = long_cut_s if long else _duration(kind, rng, ttl_s)
        faults.append(
            Fault(index=0, kind=kind, target=target, at=round(at, 3), duration=round(duration, 3), long=long)
        )
    faults.sort(key=lambda f: (f.at, f.kind, f.target))
    return [Fault(**{**asdict(f), "index": i}) for i, f in enumerate(faults)]


def only(faults: Sequence[Fault], indices: Iterable[int]) -> list[Fault]:
    """The faults with these indices (a reproduction's ``--only``); raises ValueError on an unknown one."""
    wanted = set(indices)
    unknown = wanted - {f.index for f in faults}
    if unknown:
        raise ValueError(f"no fault with index {sorted(unknown)}")
    return [f for f in faults if f.index in wanted]


def implicated(applied: Sequence[dict[str, Any]], t: float) -> list[int]:
    """Indices of the applied faults that can explain a violation at ``t`` (run-relative seconds):
    those that started before ``t`` and ended at most BLAME_AFTER_S before it. ``applied`` holds
    dicts with ``index``, ``started`` and ``ended`` (``ended`` None: still running)."""
    out = []
    for a in applied:
        started, ended = a["started"], a.get("ended")
        if started is None or started > t:
            continue
        if ended is not None and ended + BLAME_AFTER_S < t:
            continue
        out.append(a["index"])
    return sorted(out)

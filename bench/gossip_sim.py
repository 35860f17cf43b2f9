"""Gossip benchmark: deterministic simulations of the SWIM + Lifeguard library in virtual time.

Prints JSON: detection p50/p99 and dissemination rounds for N in {10, 50, 100, 200}; false positives
with and without Lifeguard under loss and under a stall; bytes sent per member per second; partition
heal time. All with memberlist's LAN profile (GossipConfig.lan()). Then the chaos cluster's pattern
with the local profile (and with LAN's suspicion multipliers at local speed, as the local profile had
them): 6 members (4 frontends, 2 routers), a router (or both) killed and restarted after 0.3-3 s while
a frontend stalls (a loaded machine): false deaths and crash detection. Last, a zone's loss with LAN
(``zone_loss``: zone b's two frontends cut off): when zone a's frontends see it silent
(``kernel.membership.silent_zones``) or dead, and the false alarms of the silence rule against
gossip's false deaths. Run: python bench/gossip_sim.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gossip.config import GossipConfig
from gossip.members import EventKind
from gossip.sim import Simulation
from kernel.membership import silent_zones

LAN = GossipConfig.lan()
TRIALS = {10: 8, 50: 4, 100: 2, 200: 2}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def settled(
    n: int, config: GossipConfig, seed: int, loss: float = 0.0, zones: dict[str, str] | None = None
) -> Simulation:
    sim = Simulation(n, config, seed=seed, loss=loss, zones=zones)
    if not sim.run_until(120.0, stop=sim.converged, check_every=0.5):
        raise RuntimeError(f"n={n} seed={seed}: no convergence")
    sim.run_until(sim.now + 5.0)
    return sim


def detection(n: int) -> dict[str, object]:
    times: list[float] = []
    first: list[float] = []
    rounds: list[float] = []
    bytes_rate: list[float] = []
    for trial in range(TRIALS[n]):
        sim = settled(n, LAN, seed=1000 * n + trial)
        before, t0 = sim.network.stats.sent_bytes, sim.now
        sim.run_until(t0 + 20.0)  # steady state, for the traffic figure
        bytes_rate.append((sim.network.stats.sent_bytes - before) / (n * 20.0))
        victim = f"m{n // 2}"
        killed_at = sim.now
        sim.kill(victim)
        survivors = n - 1
        sim.run_until(
            killed_at + 120.0,
            stop=lambda: len(sim.first_seen(victim, EventKind.DEAD, after=killed_at)) == survivors,  # noqa: B023
            check_every=0.1,
        )
        dead = sim.first_seen(victim, EventKind.DEAD, after=killed_at)
        assert len(dead) == survivors, "some survivor never detected the crash"
        suspected = sorted(sim.first_seen(victim, EventKind.SUSPECT, after=killed_at).values())
        times += [t - killed_at for t in dead.values()]
        first.append(min(dead.values()) - killed_at)
        rounds.append((suspected[-1] - suspected[0]) / LAN.gossip_interval)
    return {
        "n": n,
        "trials": TRIALS[n],
        "detection_p50_s": round(statistics.median(times), 2),
        "detection_p99_s": round(percentile(times, 0.99), 2),
        "first_detection_mean_s": round(statistics.mean(first), 2),
        "dissemination_rounds_mean": round(statistics.mean(rounds), 2),
        "dissemination_rounds_max": round(max(rounds), 2),
        "suspicion_min_s": round(LAN.suspicion_min(n), 2),
        "suspicion_max_s": round(LAN.suspicion_max(n), 2),
        "bytes_per_member_per_s": round(statistics.mean(bytes_rate)),
    }


def false_positives_under_loss(
    lifeguard: bool, loss: float, n: int = 30, seconds: float = 120.0
) -> dict[str, object]:
    config = dataclasses.replace(LAN, lifeguard=lifeguard)
    deaths = suspicions = 0
    members: set[str] = set()
    for seed in range(3):
        sim = settled(n, config, seed=seed, loss=loss)
        start = sim.now
        sim.run_until(start + seconds)
        fd = sim.false_deaths(after=start)
        deaths += len(fd)
        members |= {f"{seed}:{o.subject}" for o in fd}
        suspicions += sum(1 for o in sim.observations if o.kind == EventKind.SUSPECT and o.at >= start)
    return {
        "lifeguard": lifeguard, "loss": loss, "n": n, "seconds": seconds * 3,
        "false_dead_events": deaths, "members_falsely_dead": len(members), "suspect_events": suspicions,
    }  # fmt: skip


def false_positives_under_stall(lifeguard: bool, n: int = 10, seeds: int = 20) -> dict[str, object]:
    config = dataclasses.replace(LAN, lifeguard=lifeguard)
    runs_with_death = events = 0
    for seed in range(seeds):
        sim = settled(n, config, seed=seed)
        start = sim.now
        sim.stall("m5", 2.0)
        sim.run_until(start + 30.0)
        fd = sim.false_deaths(after=start)
        events += len(fd)
        runs_with_death += bool(fd)
    return {
        "lifeguard": lifeguard, "n": n, "stall_s": 2.0, "runs": seeds,
        "runs_where_stalled_member_declared_dead": runs_with_death, "false_dead_events": events,
    }  # fmt: skip


def false_positives_router_restart(name: str, config: GossipConfig, seeds: int = 40) -> dict[str, object]:
    """The chaos run's router kill and restart while a frontend stalls: per stall length, the runs in
    which some member that was never killed was declared dead; and the crash detection time."""
    by_stall: dict[str, object] = {}
    for stall in (0.5, 1.0, 1.5, 2.0):
        runs_with_death = events = 0
        for seed in range(seeds):
            sim = settled(6, config, seed=seed)
            rng = random.Random(seed)
            start = sim.now
            routers = ["m4", "m5"] if seed % 2 else [rng.choice(["m4", "m5"])]
            for r in routers:
                sim.kill(r)
            sim.stall(rng.choice(["m0", "m1", "m2", "m3"]), stall)
            sim.run_until(start + rng.uniform(0.3, 3.0))
            for r in routers:
                sim.restart(r)
            sim.run_until(start + 30.0)
            fd = [o for o in sim.false_deaths(after=start) if o.subject not in routers]
            events += len(fd)
            runs_with_death += bool(fd)
        by_stall[f"{stall}s"] = {"runs_with_a_false_death": runs_with_death, "false_dead_events": events}
    detect: list[float] = []
    for seed in range(10):
        sim = settled(6, config, seed=seed)
        t = sim.now
        sim.kill("m2")
        sim.run_until(t + 60.0, stop=lambda: len(sim.first_seen("m2", EventKind.DEAD, after=t)) == 5)  # noqa: B023
        seen = sim.first_seen("m2", EventKind.DEAD, after=t)
        detect.append(max(seen.values()) - t if len(seen) == 5 else math.inf)
    return {
        "profile": name, "n": 6, "runs": seeds, "suspicion_min_s": round(config.suspicion_min(6), 2),
        "suspicion_max_s": round(config.suspicion_max(6), 2), "by_stall": by_stall,
        "crash_detected_by_all_p50_s": round(statistics.median(detect), 2),
        "crash_detected_by_all_max_s": round(max(detect), 2),
    }  # fmt: skip


def lone_heal_false_deaths(
    config: GossipConfig, seed: int, cut: float, *, router_kill: bool = False
) -> list[str]:
    """The chaos run's ``partition_fe``: one frontend (m3 of 7: four frontends, three routers) cut off
    alone for ``cut`` seconds, which declares the others dead; then healed (with ``router_kill``, a
    router killed at the heal and restarted 0.5 s later, as ``router`` of that fault does). Returns
    the members of the other side declared dead by another member of it after the heal."""
    sim = settled(7, config, seed=seed)
    lone = sim.address("m3")
    start = sim.now
    sim.network.partition([[lone], [a for a in sim.cores if a != lone]])
    sim.run_until(start + cut)
    sim.network.heal()
    healed = sim.now
    if router_kill:
        sim.kill("m5")
        sim.run_until(healed + 0.5)
        sim.restart("m5")
    sim.run_until(healed + 20.0)
    skip = {"m3", "m5"} if router_kill else {"m3"}
    return sorted(
        {o.subject for o in sim.false_deaths(after=healed) if skip.isdisjoint((o.observer, o.subject))}
    )


def false_positives_lone_heal(name: str, config: GossipConfig, seeds: int = 30) -> dict[str, object]:
    """Per cut length, the runs in which a member cut off alone had a live member of the other side
    declared dead there after the heal (its verdicts arriving with the heal)."""
    by_cut: dict[str, object] = {}
    for cut in (3.0, 4.5, 6.0, 8.0):
        for kill in (False, True):
            hits = sum(
                bool(lone_heal_false_deaths(config, seed, cut, router_kill=kill)) for seed in range(seeds)
            )
            by_cut[f"{cut}s{' + router kill' if kill else ''}"] = hits
    return {"profile": name, "n": 7, "runs": seeds, "runs_with_a_false_death": by_cut}


def partition_heal(n: int = 50, seeds: int = 3) -> dict[str, object]:
    heal: list[float] = []
    for seed in range(seeds):
        sim = settled(n, LAN, seed=seed)
        addresses = list(sim.cores)
        start = sim.now
        sim.network.partition([addresses[: n // 2], addresses[n // 2 :]])
        sim.run_until(start + 30.0)
        sim.network.heal()
        healed = sim.now
        if not sim.run_until(healed + 120.0, stop=sim.converged, check_every=0.1):
            raise RuntimeError("no re-convergence after heal")
        heal.append(sim.now - healed)
    return {
        "n": n, "partition_s": 30.0, "heal_to_full_membership_s": [round(h, 1) for h in heal],
        "stated_bound_s": 2 * LAN.reconnect_interval,
    }  # fmt: skip


# The zone-loss tests' cluster: two frontends per zone, a router in zone a, the witness in zone w.
ZONE_OF = {"m0": "a", "m1": "a", "m2": "b", "m3": "b", "m4": "a", "m5": "w"}


def _zone_watch(sim: Simulation, hold: float, lost: set[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Run 30 s, checking every 50 ms: per observer, when it first saw zone b silent
    (``kernel.membership.silent_zones``) and when both of zone b's frontends were dead to it."""
    silent: dict[str, float] = {}
    dead: dict[str, float] = {}

    def look() -> bool:
        for core in sim.live():
            if core.name in lost or (core.name in silent and core.name in dead):
                continue
            members = core.members()
            zones = silent_zones(members, me=core.name, now=sim.now, hold=hold)
            if "b" in zones:
                silent.setdefault(core.name, sim.now)
            if sum(1 for m in members if m.name in ("m2", "m3") and m.state.name in ("DEAD", "LEFT")) == 2:
                dead.setdefault(core.name, sim.now)
        return False

    sim.run_until(sim.now + 30.0, stop=look, check_every=0.05)
    return silent, dead


def zone_loss(name: str, config: GossipConfig, hold: float, seeds: int = 30) -> dict[str, object]:
    """Zone b cut off (both its frontends unreachable): when each zone-a frontend saw it silent (for
    ``hold``) and dead; and the false alarms: both zone-b frontends stalled together, one frontend
    stalled, an observer stalled, 10% loss (runs where zone b was seen silent, or a member dead,
    though nothing was lost)."""
    cut: dict[str, list[float]] = {"silent": [], "dead": [], "either": []}
    for seed in range(seeds):
        sim = settled(6, config, seed=seed, zones=ZONE_OF)
        t0 = sim.now
        sim.network.partition([[sim.address(n) for n in ("m2", "m3")],
                               [sim.address(n) for n in ("m0", "m1", "m4", "m5")]])  # fmt: skip
        silent, dead = _zone_watch(sim, hold, {"m2", "m3"})
        for kind, seen in (("silent", silent), ("dead", dead)):
            cut[kind] += [seen.get(n, math.inf) - t0 for n in ("m0", "m1")]
        cut["either"] += [min(silent.get(n, math.inf), dead.get(n, math.inf)) - t0 for n in ("m0", "m1")]
    alarms: dict[str, object] = {}
    for what, stalled, loss in [
        ("zone_b_stalls_1s", {"m2": 1.0, "m3": 1.0}, 0.0), ("zone_b_stalls_2s", {"m2": 2.0, "m3": 2.0}, 0.0),
        ("zone_b_stalls_3s", {"m2": 3.0, "m3": 3.0}, 0.0), ("zone_b_stalls_4s", {"m2": 4.0, "m3": 4.0}, 0.0),
        ("one_frontend_stalls_3s", {"m2": 3.0}, 0.0), ("observer_stalls_3s", {"m0": 3.0}, 0.0),
        ("loss_10pct", {}, 0.10),
    ]:
        silent_runs = death_runs = 0
        for seed in range(seeds):
            sim = Simulation(6, config, seed=seed, loss=loss, zones=ZONE_OF)
            sim.run_until(120.0, stop=sim.converged, check_every=0.5)
            sim.run_until(sim.now + 5.0)
            t0 = sim.now
            for n, d in stalled.items():
                sim.stall(n, d)
            silent, _ = _zone_watch(sim, hold, set())
            silent_runs += bool(silent)
            death_runs += bool(sim.false_deaths(after=t0))
        alarms[what] = {"runs_zone_b_seen_silent": silent_runs, "runs_with_a_false_death": death_runs}
    return {
        "profile": name, "hold_s": hold, "runs": seeds,
        "cut_seen_p50_s": round(statistics.median(cut["either"]), 2),
        "cut_seen_p90_s": round(percentile(cut["either"], 0.9), 2),
        "cut_seen_max_s": round(max(cut["either"]), 2),
        "cut_seen_silent_first": sum(1 for s, d in zip(cut["silent"], cut["dead"], strict=True) if s < d),
        "cut_dead_p50_s": round(statistics.median(cut["dead"]), 2),
        "cut_dead_p90_s": round(percentile(cut["dead"], 0.9), 2),
        "cut_dead_max_s": round(max(cut["dead"]), 2),
        "false_alarms": alarms,
    }  # fmt: skip


def main() -> None:
    started = time.perf_counter()
    result = {
        "profile": "lan",
        "detection": [detection(n) for n in (10, 50, 100, 200)],
        "false_positives_loss": [
            false_positives_under_loss(lg, loss) for loss in (0.05, 0.10) for lg in (True, False)
        ],
        "false_positives_stall": [false_positives_under_stall(lg) for lg in (True, False)],
        "partition_heal": partition_heal(),
        "false_positives_router_restart": [
            false_positives_router_restart(
                "local with LAN's suspicion multipliers (4 / 6), as before",
                dataclasses.replace(GossipConfig.local(), suspicion_mult=4, suspicion_max_mult=6),
            ),
            false_positives_router_restart("local", GossipConfig.local()),
        ],
        "false_positives_lone_heal": [false_positives_lone_heal("local", GossipConfig.local())],
    }
    result["zone_loss"] = [zone_loss("lan", LAN, hold) for hold in (2.0, 3.0)]
    result["wall_clock_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Deterministic simulation of a frontend cluster: the counterpart of ``gossip/sim.py``.

Theory of operation
-------------------
A ``World`` runs N real ``FrontendNode`` cores (2 zones) in virtual time on a
``SimNet`` (``simnet.py``), with one router per zone making the real routing
decision (``router.decide``) over its own map, and ``SimClient``s
(``simclient.py``) that subscribe, publish pipelined bursts and resume through
any router (taking connections over with ``takeover.py``). Each observer's
cluster map (every node's and every router's) follows the truth (which
processes live, which are draining, who can reach whom) after its own seeded
detection delay, so maps disagree for a while after every change, as gossip's
do.

A run is a pure function of ``(seed, schedule)``. The schedule is a list of
``Fault``s drawn from the seed: node and zone partitions, kill -9, drain,
restart, zone loss, client tunnel cuts and peer link resets. Faults happen in
the first part of the run; then partitions heal, dead frontends restart,
publishing stops and the cluster settles. The outcome is judged by the chaos
checker (``bench/chaos/checker.py``: nothing ACKed lost, exactly once, serial
order, no silent gap, no split brain, nothing NACKed delivered) plus publisher
order (``publisher_order``: one connection's publishes on a channel arrive in
the order they were sent).

A failing seed is reported with its schedule; ``shrink`` removes faults while
the failure persists, and ``run(seed, schedule)`` replays it bit for bit (the
run's digest says so), under any ``PYTHONHASHSEED``: nothing a run does depends
on the iteration order of a set of strings (which the hash salt changes); the
cores iterate such sets sorted wherever order reaches the network.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import multiprocessing
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.node import FrontendNode
from frontend.simcheck import check_run, summarize, zone_loss_availability
from frontend.simclient import SimClient, Transport
from frontend.simdrain import drain
from frontend.simloss import CopyLedger
from frontend.simnet import Scheduler, SimBus, SimNet, SimRandom
from frontend.simwitness import WITNESS, WITNESS_ZONE, ask_witness
from kernel.keys import InvalidKey, KeySigner
from kernel.placement import ClusterView, Peer
from kernel.quorum import Witness
from router.decide import NoRoute, RouteRequest, decide

SECRET = "simulated-cluster-secret-0123456789abcdef"
FAULT_KINDS = ("node_partition", "zone_partition", "kill", "drain", "restart", "zone_loss", "tunnel_cut",
               "link_reset")  # fmt: skip
DETECT_MS = (300, 2_500)  # how long an observer's map takes to follow a change
ASK_EVERY_MS = 500  # how often a node's driver looks at whether to ask the witness


@dataclass(frozen=True, slots=True)
class Fault:
    at_ms: int
    kind: str
    target: str  # a node, a zone, a client, or "a|b" for a link
    duration_ms: int

    def to_json(self) -> list[Any]:
        return [self.at_ms, self.kind, self.target, self.duration_ms]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Fault:
        return cls(int(raw[0]), str(raw[1]), str(raw[2]), int(raw[3]))


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    per_zone: int = 2
    clients: int = 5
    channels: int = 2
    faults: int = 3
    fault_window_ms: tuple[int, int] = (2_000, 16_000)
    publish_until_ms: int = 20_000
    heal_at_ms: int = 20_000
    end_ms: int = 45_000
    burst_every_ms: tuple[int, int] = (700, 3_000)
    burst: tuple[int, int] = (1, 4)
    kinds: tuple[str, ...] = FAULT_KINDS
    witness: bool = False  # a witness router in zone w: the zone quorum lets a majority side go on
    max_fault_ms: int = 6_000  # the longest partition, or downtime of a restart
    ttl_ms: int = 120_000  # connectionStateTtl; the dedupe window is this plus maxIdleInterval
    connected_lost: float = 0.0  # the share of resumes whose CONNECTED is lost with the transport
    # A new connectionId or a 90003 while every fault is shorter than the TTL is a violation
    # (``discontinuity_within_ttl``). Off by default: two overlapping state losses can destroy a
    # connection's or a channel's every copy, and the judge does not yet tell those apart.
    judge_ttl: bool = False
    presence_linger_ms: int = 15_000  # how long a member of a connection gone away lingers


DEFAULT = SimConfig()


def make_schedule(seed: int, cfg: SimConfig) -> list[Fault]:
    rng = random.Random(f"schedule:{seed}")
    nodes = [f"fe-{z}{i + 1}" for z in "ab" for i in range(cfg.per_zone)]
    out = []
    for _ in range(cfg.faults):
        kind = rng.choice(cfg.kinds)
        at = rng.randint(*cfg.fault_window_ms)
        dur = rng.randint(500, cfg.max_fault_ms)
        if kind in ("zone_partition", "zone_loss"):
            target = rng.choice("ab")
        elif kind == "tunnel_cut":
            target = f"c{rng.randrange(cfg.clients)}"
        elif kind == "link_reset":
            a, b = rng.sample(nodes, 2)
            target = f"{a}|{b}"
        else:
            target = rng.choice(nodes)
        out.append(Fault(at, kind, target, dur))
    return sorted(out, key=lambda f: (f.at_ms, f.kind, f.target))


class World:
    def __init__(self, seed: int, cfg: SimConfig, schedule: list[Fault]) -> None:
        self.seed = seed
        self.cfg = cfg
        self.schedule = schedule
        self.rng = SimRandom(seed)
        self.sched = Scheduler()
        self.net = SimNet(self.sched, SimRandom(self.rng.getrandbits(64)))
        self.net.after_input = self._arm
        self.client_latency_ms = (1, 20)
        self.signer = KeySigner([SECRET])
        self.zone = {f"fe-{z}{i + 1}": z for z in "ab" for i in range(cfg.per_zone)}
        self.routers = {"r-a": "a", "r-b": "b"}
        self.witness = Witness(started_ms=-1_000_000)  # in a third zone: it only votes
        self.nodes: dict[str, FrontendNode] = {}
        self.draining: set[str] = set()
        self.views: dict[str, ClusterView] = {}  # observer -> its current map
        self._armed: dict[str, int] = {}
        self._started: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.clients: list[SimClient] = []
        self.faults_applied: Counter[str] = Counter()
        self.needless: list[dict[str, Any]] = []  # resumes answered with a needless new connection
        # entries a double fault (two stops within a detection and a re-copy) left no copy of
        self.copies = CopyLedger(window_ms=DETECT_MS[1] + 1_000)  # (simloss.py)
        for node_id in self.zone:
            self._start(node_id)
        for obs in [*self.zone, *self.routers]:
            self.views[obs] = self._truth(obs)
        for node_id in self.zone:
            self._apply_view(node_id)
        names = [f"ch{i}" for i in range(cfg.channels)]
        for i in range(cfg.clients):
            subs = [(ch, self.rng.random() < 0.7) for ch in names]
            client = SimClient(self, f"c{i}", subs, SimRandom(self.rng.getrandbits(64)))
            self.clients.append(client)
            self.sched.at(self.rng.randint(0, 500), client.connect)
            self.sched.at(self.rng.randint(800, 1_500), functools.partial(self._publisher, client))
        for fault in schedule:
            self.sched.at(fault.at_ms, functools.partial(self._apply, fault))
        self.sched.at(cfg.heal_at_ms, self._heal_all)
        for node_id in sorted(self.zone) if cfg.witness else ():
            self.sched.at(ASK_EVERY_MS, functools.partial(self._ask_witness, node_id))

    # -- processes ------------------------------------------------------------
    def _start(self, node_id: str) -> None:
        config = FrontendConfig(node_id=node_id, zone=self.zone[node_id], dev=True, cluster_secret=SECRET,
                                connection_state_ttl_ms=self.cfg.ttl_ms,
                                presence_linger_ms=self.cfg.presence_linger_ms)  # fmt: skip
        node = FrontendNode(config, rng=SimRandom(self.rng.getrandbits(64)), metrics=_METRICS,
                            signer=self.signer)  # fmt: skip
        node.channels.now_ms = self.sched.now
        node.channels.ready = False  # until its map shows another frontend (cluster.py's rule)
        self._started[node_id] = self.sched.now
        self.nodes[node_id] = node
        self.net.nodes[node_id] = node
        node.channels.bus = SimBus(self.net, node)
        self.views[node_id] = self._truth(node_id)
        self._apply_view(node_id)
        self._changed()

    def _stop(self, node_id: str) -> None:
        if node_id not in self.nodes:
            return
        self.copies.before_stop(self.nodes, node_id, self.sched.now)
        node = self.nodes.pop(node_id)
        self.net.nodes.pop(node_id, None)
        self.net.process_gone(node_id)
        self.draining.discard(node_id)
        self._armed.pop(node_id, None)
        for c in self.clients:
            tr = c.transport
            if tr is not None and tr.process is node:
                t = self.sched.now + self.rng.randint(*self.client_latency_ms)
                self.sched.at(t, functools.partial(c.transport_closed, tr))  # RST: the client sees it
        self._changed()

    def input(self, node_id: str, fn: Callable[[], None]) -> None:
        """Run an input of ``node_id`` at the current virtual time, then re-arm its timer."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        node.channels.now_ms = self.sched.now
        fn()
        self._arm(node_id)

    def _arm(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            return
        due = node.next_deadline()
        armed = self._armed.get(node_id)
        if armed is not None and armed <= due:
            return
        self._armed[node_id] = due

        def fire() -> None:
            if self.nodes.get(node_id) is node and self._armed.get(node_id) == due:
                del self._armed[node_id]
                self.input(node_id, lambda: node.tick(self.sched.now))

        self.sched.at(due, fire)

    # -- maps -------------------------------------------------------------------
    def _group(self, who: str) -> int:
        zone = WITNESS_ZONE if who == WITNESS else self.routers.get(who) or self.zone.get(who)
        if who in self.net.group:
            return self.net.group[who]
        return self.net.group.get(f"zone:{zone}", -1)

    def reachable(self, a: str, b: str) -> bool:
        return self._group(a) == self._group(b)

    def _truth(self, observer: str) -> ClusterView:
        peers = {}
        for node_id, zone in self.zone.items():
            alive = node_id in self.nodes and self.reachable(observer, node_id)
            active = node_id not in self.draining
            peers[node_id] = Peer(node_id=node_id, role="frontend", zone=zone, client_addr=node_id,
                                  peer_addr=node_id, alive=alive, active=active)  # fmt: skip
        if self.cfg.witness:
            peers[WITNESS] = Peer(node_id=WITNESS, role="router", zone=WITNESS_ZONE,
                                  alive=self.reachable(observer, WITNESS))  # fmt: skip
        return ClusterView(peers)

    def _changed(self) -> None:
        for obs in [*self.zone, *self.routers]:
            self.sched.at(
                self.sched.now + self.rng.randint(*DETECT_MS), functools.partial(self._refresh, obs)
            )

    def _refresh(self, observer: str) -> None:
        view = self._truth(observer)
        if view == self.views.get(observer):
            return
        self.views[observer] = view
        if observer in self.nodes:
            self._apply_view(observer)

    def _apply_view(self, node_id: str) -> None:
        node = self.nodes[node_id]
        view = self.views[node_id]
        if not node.channels.ready and (
            any(p.alive and p.node_id != node_id for p in view.frontends())
            or self.sched.now >= self._started[node_id] + 3_000
        ):
            node.channels.ready = True
        bus = node.channels.bus
        assert isinstance(bus, SimBus)
        bus.set_addresses({p.node_id for p in view.frontends() if p.alive})
        self.input(node_id, lambda: node.apply_view(self.sched.now, view))

    def _ask_witness(self, node_id: str) -> None:
        """A node's driver asks the witness router for a grant when its core says so (cluster.py)."""
        self.sched.at(self.sched.now + ASK_EVERY_MS, functools.partial(self._ask_witness, node_id))
        ask_witness(self, node_id)

    # -- clients ------------------------------------------------------------------
    def route(self, client: SimClient, params: dict[str, str]) -> None:
        router = self.rng.choice(sorted(self.routers))
        refused: set[str] = set()
        request = RouteRequest(path="/", params=params, upgrade=True)
        while True:
            decision = decide(request, self.views[router], self.signer, refused)
            if isinstance(decision, NoRoute):
                client.route_failed()
                return
            target = decision.target
            if target in self.nodes:
                break
            refused.add(target)  # the connect was refused: dead at once (DESIGN 4.2)
        if not self.reachable(router, target):
            self.sched.at(self.sched.now + 2_000, client.route_failed)  # connect timeout
            return
        tr = Transport(self, client, target)
        client.attached_transport(tr)
        node = tr.process

        def connect(p: Any) -> None:
            if self.nodes.get(target) is not node:
                return
            tr.session = node.connect(self.sched.now, p, tr)
            self._judge_new_connection(target, params, tr.session)
            if tr.session is not None and not tr.open:
                node.transport_lost(self.sched.now, tr.session, tr)

        def arrive() -> None:
            if tr.open:
                self.input(target, lambda: node.takeover.prepare(self.sched.now, params, connect))

        self.sched.at(self.sched.now + self.rng.randint(*self.client_latency_ms), arrive)

    def _judge_new_connection(self, target: str, params: dict[str, str], session: Any) -> None:
        """A resume answered with a new connection while a frontend that ``target`` can reach and
        sees alive still holds the connection live, at the key's epoch or later: a discontinuity
        nothing forced (the check that
        catches c257f29 reverted). Omniscient: only the simulation can look inside every process."""
        wanted = params.get("resume")
        if not wanted or session is None:
            return
        try:
            key = self.signer.verify(wanted)
        except InvalidKey:  # a key we did not sign is not ours to judge
            return
        conn_id = key.connection_id
        if session.connection_id == conn_id:
            return
        for node_id, other in self.nodes.items():
            held = other.sessions.get(conn_id)
            if (
                held is not None
                and not held.terminal
                and held.epoch >= key.epoch  # an older epoch's state is stale (seed 1622)
                and self.reachable(target, node_id)
                and self.views[target].alive(node_id)
            ):
                found = {"connection": conn_id, "answered_by": target, "held_by": node_id}
                self.needless.append({"kind": "needless_new_connection", "at_ms": self.sched.now, **found})
                return

    def _publisher(self, client: SimClient) -> None:
        if self.sched.now >= self.cfg.publish_until_ms:
            client.stopped = True
            return
        channel = f"ch{client.rng.randrange(self.cfg.channels)}"
        client.publish_burst(channel, client.rng.randint(*self.cfg.burst))
        self.sched.at(
            self.sched.now + client.rng.randint(*self.cfg.burst_every_ms), lambda: self._publisher(client)
        )

    # -- faults ---------------------------------------------------------------------
    def _apply(self, f: Fault) -> None:
        self.faults_applied[f.kind] += 1
        later = self.sched.now + f.duration_ms
        match f.kind:
            case "node_partition":
                self.net.group = {**self.net.group, f.target: 100 + len(self.net.group)}
                self._changed()
                self.sched.at(later, self._heal)
            case "zone_partition":
                self.net.group = {f"zone:{f.target}": 1, f"zone:{'b' if f.target == 'a' else 'a'}": 2,
                                  f"zone:{WITNESS_ZONE}": 2}  # fmt: skip
                self.net.group.update({n: (1 if z == f.target else 2) for n, z in self.zone.items()})
                self._changed()
                self.sched.at(later, self._heal)
            case "kill":
                self._stop(f.target)
            case "restart":
                self._stop(f.target)
                self.sched.at(later, functools.partial(self._restart, f.target))
            case "zone_loss":
                for n, z in self.zone.items():
                    if z == f.target:
                        self._stop(n)
            case "drain":
                if f.target in self.nodes and f.target not in self.draining:
                    drain(self, f.target, ask_witness if self.cfg.witness else None)
            case "tunnel_cut":
                self.clients[int(f.target[1:])].cut()
            case "link_reset":
                a, b = f.target.split("|")
                self.net.reset_link(a, b)

    def _restart(self, node_id: str) -> None:
        if node_id not in self.nodes:
            self._start(node_id)

    def _heal(self) -> None:
        if self.net.group:
            self.net.group = {}
            for obs in self.views:
                self.net.group.pop(obs, None)
            self.net.heal()
            self._changed()

    def _heal_all(self) -> None:
        self._heal()
        for node_id in self.zone:
            if node_id not in self.nodes:
                self._start(node_id)

    # -- running --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        crash: str | None = None
        try:
            self.sched.run_until(self.cfg.end_ms)
        except Exception:  # a core raised: that is a finding, reported like any violation
            crash = traceback.format_exc(limit=-6)
        publishes = [r for c in self.clients for r in c.records]
        logs = [log for c in self.clients for log in c.logs()]
        ttl_s = self.cfg.ttl_ms / 1000 if self.cfg.judge_ttl else None
        verdict = check_run(publishes, logs, self.copies.destroyed, ttl_s=ttl_s)
        if self.needless:
            verdict["violations"]["needless_new_connection"] = len(self.needless)
            verdict["examples"].extend(self.needless[:3])
        unavailable = []
        if self.cfg.witness:  # without one, losing a zone rightly stops publishing (no majority)
            unavailable = zone_loss_availability(
                publishes, self.schedule, self.cfg.channels, self.cfg.heal_at_ms
            )
        if unavailable:
            verdict["violations"]["zone_loss_unavailable"] = len(unavailable)
            verdict["examples"].extend(unavailable[:3])
        if crash is not None:
            verdict["violations"]["crash"] = 1
            verdict["examples"].insert(0, {"kind": "crash", "at_ms": self.sched.now, "traceback": crash})
        # Refusals by a side without a majority of zones (50350): how many, and the longest wait.
        refused = [p["t"] - p["sent_t"] for p in publishes if p["outcome"] == "nack" and p["code"] == 50350]
        digest = hashlib.sha256(json.dumps([publishes, logs], sort_keys=True).encode()).hexdigest()[:16]
        return {
            "seed": self.seed,
            "ok": not verdict["violations"],
            "violations": verdict["violations"],
            "examples": verdict["examples"],
            "beyond_model": verdict["beyond_model"],  # judged apart: every copy lost (simloss.py)
            "faults": dict(self.faults_applied),
            "publishes": len(publishes),
            "acked": sum(1 for p in publishes if p["outcome"] == "ack"),
            "refused_no_quorum": len(refused),
            "refused_no_quorum_max_s": round(max(refused, default=0.0), 3),
            "refused_no_quorum_median_s": round(sorted(refused)[len(refused) // 2], 3) if refused else None,
            "events": self.sched.events,
            "digest": digest,
            "schedule": [f.to_json() for f in self.schedule],
        }


_METRICS = Metrics()


def quiet_logs() -> None:
    """The cores log every step; a simulation of thousands of runs logs nothing below errors."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(50), cache_logger_on_first_use=True
    )


def run(seed: int, cfg: SimConfig | None = None, schedule: list[Fault] | None = None) -> dict[str, Any]:
    cfg = cfg or SimConfig()
    return World(seed, cfg, make_schedule(seed, cfg) if schedule is None else schedule).run()


def shrink(seed: int, cfg: SimConfig, schedule: list[Fault]) -> list[Fault]:
    """The smallest sub-schedule (removing one fault at a time) under which ``seed`` still fails."""
    current = list(schedule)
    progress = True
    while progress and len(current) > 1:
        progress = False
        for i in range(len(current)):
            trial = current[:i] + current[i + 1 :]
            if not run(seed, cfg, trial)["ok"]:
                current, progress = trial, True
                break
    return current


SEEDS_PER_TASK = 8  # taken by a worker as it comes free: seeds' costs vary 20-fold (fixed halves idled one)
SIM_GC_THRESHOLDS = (50_000, 20, 20)  # as the daemons' (kernel/cli.py): a run allocates millions of objects


def sim_process() -> None:
    """Set up a process that runs seeds: no logs; the collector runs rarely and never scans what was
    loaded before (frozen). It changes no result: nothing in a run has a finalizer or a weakref."""
    quiet_logs()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SIM_GC_THRESHOLDS)


def _run_many(args: tuple[list[int], SimConfig]) -> list[dict[str, Any]]:
    seeds, cfg = args
    out = []
    for seed in seeds:
        started = time.process_time()
        result = run(seed, cfg)
        result["cpu_s"] = time.process_time() - started  # not part of the run: its cost here
        out.append(result)
    return out


def run_seeds(seeds: list[int], cfg: SimConfig, procs: int = 1) -> dict[str, Any]:
    """Run ``seeds`` (in ``procs`` processes) and summarize: the figures ``make sim`` prints."""
    started = time.perf_counter()
    if procs > 1:
        tasks = [(seeds[i : i + SEEDS_PER_TASK], cfg) for i in range(0, len(seeds), SEEDS_PER_TASK)]
        with multiprocessing.get_context("fork").Pool(procs, initializer=sim_process) as pool:
            results = [r for part in pool.imap_unordered(_run_many, tasks) for r in part]
        results.sort(key=lambda r: r["seed"])
    else:
        quiet_logs()
        results = _run_many((seeds, cfg))
    return summarize(results, time.perf_counter() - started, procs)


def _replay(seed: int, schedule: list[Any], cfg: SimConfig) -> str:
    flags = (
        "".join(
            f" --{name.replace('_', '-')} {getattr(cfg, name)}"
            for name in ("max_fault_ms", "ttl_ms", "connected_lost")
            if getattr(cfg, name) != getattr(DEFAULT, name)
        )
        + (" --witness" if cfg.witness else "")
        + (" --judge-ttl" if cfg.judge_ttl else "")
    )
    return f"python -m frontend.sim --seed {seed}{flags} --schedule '{json.dumps(schedule)}'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m frontend.sim", description="Deterministic simulation of a frontend cluster."
    )
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, help="run this one seed and print its whole result")
    parser.add_argument("--schedule", help="with --seed: the fault schedule to replay (JSON list)")
    parser.add_argument("--shrink", action="store_true", help="with --seed: shrink a failing schedule")
    parser.add_argument("--faults", type=int, default=DEFAULT.faults, help="faults per run (default 3)")
    parser.add_argument("--max-fault-ms", type=int, default=DEFAULT.max_fault_ms,
                        help="the longest partition or restart downtime, ms (default 6000)")  # fmt: skip
    parser.add_argument("--ttl-ms", type=int, default=DEFAULT.ttl_ms,
                        help="connectionStateTtl, ms (default 120000): sets the dedupe window")  # fmt: skip
    parser.add_argument("--connected-lost", type=float, default=DEFAULT.connected_lost,
                        help="share of resumes whose CONNECTED is lost (default 0)")  # fmt: skip
    parser.add_argument("--kinds", help="comma-separated fault kinds (default: all)")
    parser.add_argument("--witness", action="store_true",
                        help="a witness router in zone w (the zone quorum, kernel/quorum.py)")  # fmt: skip
    parser.add_argument("--judge-ttl", action="store_true",
                        help="judge every 90003 or new connectionId within the TTL a violation")  # fmt: skip
    args = parser.parse_args(argv)
    sim_process()
    kinds = tuple(args.kinds.split(",")) if args.kinds else FAULT_KINDS
    if not set(kinds) <= set(FAULT_KINDS):
        parser.error(f"--kinds: unknown fault kinds {sorted(set(kinds) - set(FAULT_KINDS))}")
    if not 0.0 <= args.connected_lost <= 1.0:
        parser.error("--connected-lost: a share between 0 and 1")
    cfg = SimConfig(faults=args.faults, max_fault_ms=args.max_fault_ms, ttl_ms=args.ttl_ms, kinds=kinds,
                    connected_lost=args.connected_lost, witness=args.witness,
                    judge_ttl=args.judge_ttl)  # fmt: skip
    if args.seed is not None:
        schedule = None
        if args.schedule:
            schedule = [Fault.from_json(f) for f in json.loads(args.schedule)]
        result = run(args.seed, cfg, schedule)
        if not result["ok"] and args.shrink:
            small = shrink(args.seed, cfg, [Fault.from_json(f) for f in result["schedule"]])
            result["shrunk_schedule"] = [f.to_json() for f in small]
            result["replay"] = _replay(args.seed, result["shrunk_schedule"], cfg)
        print(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    summary = run_seeds(list(range(args.start, args.start + args.seeds)), cfg, args.procs)
    first = summary["first_failure"]
    if first is not None:
        small = shrink(first["seed"], cfg, [Fault.from_json(f) for f in first["schedule"]])
        first["shrunk_schedule"] = [f.to_json() for f in small]
        first["replay"] = _replay(first["seed"], first["shrunk_schedule"], cfg)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

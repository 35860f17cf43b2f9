"""The chaos run: a real local cluster, SDK clients under load, a seeded fault schedule, then the checker.

    python -m bench.chaos --faults 100 --seed 7          # or: make chaos FAULTS=100 SEED=7
    python -m bench.chaos --faults 100 --seed 7 --only 3,12   # replay only those faults of that schedule

Starts 4 frontends in zones a and b, 2 routers and a witness router in zone w
(``tests/support/cluster.py``) with a short connection-state TTL; fe-a1 and fe-a2 run in one
network namespace and fe-b2 in another (``net.py``), so that zone a and fe-b2 can each be
partitioned off. Clients (``load.py``) reach the routers through one fault tunnel each, publish
numbered messages and record what they receive. The faults of ``schedule.generate`` are applied on
their planned times, overlapping across groups; when they are all done the publishers stop, every
subscriber is given time to catch up, and ``checker`` judges the publishers' outcomes and every receive log.

Prints one JSON summary; exits 1 on any violation, with a ``reproduction`` (the seed and the faults
that can explain the violations, and the command that replays just them). ``--workdir`` keeps the
daemons' logs and ``run.json`` (every publish and every receive log).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos import checker, nodelogs, schedule, tenures  # noqa: E402
from bench.chaos.load import ChaosClient, ClientSpec  # noqa: E402
from bench.chaos.net import ChaosNet, chaos_net  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.cluster import LocalCluster, run_cluster  # noqa: E402
from tests.support.streams import wait_until, wait_until_async  # noqa: E402
from tests.support.tunnel import Tunnel  # noqa: E402

# The chaos cluster's timing: a short TTL so that a cut longer than it is affordable.
TTL_MS = 20_000  # the dedupe window (TTL + idle) must outlast a partition and its settling
IDLE_MS = 1_000
# Shorter than Ably's 15 s so that the faults exercise leaves and re-entries (cuts longer than it).
PRESENCE_LINGER_MS = 5_000
LONG_CUT_S = 23.0  # > TTL + idle (21 s): the server's connection state and channel retention expire
OUTBOX_LIMIT = 32  # frames queued for a transport before it is cut as a slow consumer
DRAIN_TIMEOUT_S = 6.0
CHANNELS = ("chaos:0", "chaos:1", "chaos:2")
FIREHOSE = "chaos:firehose"
FRONTENDS = (("fe-b1", "b"), ("fe-a1", "a"), ("fe-a2", "a"), ("fe-b2", "b"))  # the first two are seeds
ROUTERS = (("rt1", "a"), ("rt2", "b"))  # the clients' routers, and the router faults' targets
# rt-w alone in zone w: the zone quorum's witness (kernel/quorum.py), so that a zone loss or a zone
# partition leaves the other zone publishing (as deploy/local's rt2 in zone c). No client uses it and
# no fault targets it, so a seed's schedule is what it was before the witness.
WITNESS = ("rt-w", "w")
ZONES = ["a", "b", WITNESS[1]]  # every zone: the frontends' and the witness's votes
SETTLE_TIMEOUT_S = 60.0
CLUSTER_GET_TIMEOUT_S = 2.0  # one /cluster answer; the settle asks again until SETTLE_TIMEOUT_S
TAIL_S = 3.0
ANSWER_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 40.0
ATTRIBUTE_GRACE_S = 5.0  # a disconnection starting this long after a fault ended is still its doing
PIPELINE = 4  # publishes a "pub" client keeps in flight (the publisher-order check's subject)
UNEXPLAINED_OUTAGE_S = 1.0  # a client outage this long that no fault explains fails the run
# A bound on connecting and attaching every client, not a wait: at load 26 on the shared 2-core
# machine 33 clients did not all attach within 120 s, which crashed a run before its first fault.
CLIENTS_UP_TIMEOUT_S = 300.0


def roster(clients: int, comet_share: float, pipeline: int = PIPELINE) -> list[ClientSpec]:
    """The clients: publishers, subscribers and both, over CHANNELS, a mix of transports and formats;
    plus ``slow`` (the slow consumer's target), ``fh-watch`` on its channel, and ``burst``."""
    comet_every = round(1 / comet_share) if comet_share > 0 else 0
    out = []
    for i in range(clients):
        comet = comet_every > 0 and i % comet_every == comet_every - 1
        transport, fmt = ("comet", "json") if comet else ("web_socket", "json" if i % 2 else "msgpack")
        role = ("pub", "sub", "both", "sub")[i % 4]
        a, b, c = (CHANNELS[(i + k) % len(CHANNELS)] for k in range(3))
        pubs = (a,) if role == "pub" else (b,) if role == "both" else ()
        subs = () if role == "pub" else (b, c) if role == "both" else (a, b)
        out.append(
            ClientSpec(
                name=f"{role}{i}",
                transport=transport,
                format=fmt,
                publishes=pubs,
                subscribes=subs,
                router=i % 2,
                pipeline=pipeline if role == "pub" else 1,
            )
        )
    fh_transport = ("comet", "json") if comet_every else ("web_socket", "json")
    out += [
        ClientSpec(name="slow", transport="web_socket", format="msgpack", subscribes=(FIREHOSE, CHANNELS[0])),
        ClientSpec(
            name="fh-watch",
            transport=fh_transport[0],
            format=fh_transport[1],
            subscribes=(FIREHOSE,),
            router=1,
        ),
        ClientSpec(name="burst", transport="web_socket", format="msgpack", bursts=(FIREHOSE,)),
    ]
    return out


def targets_for(specs: Sequence[ClientSpec], net: ChaosNet | None) -> schedule.Targets:
    names = [s.name for s in specs]
    return schedule.Targets(
        frontends=[name for name, _ in FRONTENDS],
        isolatable=["fe-b2"] if net is not None else [],
        zone_partition=net is not None,
        routers=[name for name, _ in ROUTERS],
        clients=[n for n in names if n != "burst"],
        slow=["slow"],
        long_cut=[s.name for s in specs if s.publishes and s.subscribes] or names,
        zones={z: [name for name, zone in FRONTENDS if zone == z] for z in sorted({z for _, z in FRONTENDS})},
    )


class Driver:
    """Applies the faults to the cluster, the network and the clients' tunnels, and records when."""

    def __init__(
        self, cluster: LocalCluster, net: ChaosNet | None, clients: dict[str, ChaosClient], t0: float
    ) -> None:
        self.cluster = cluster
        self.net = net
        self.clients = clients
        self.t0 = t0
        self.applied: list[dict[str, Any]] = []
        self.anomalies: list[dict[str, Any]] = []
        self.unsettled = ""  # what the last settle check found unsettled
        self.down: list[dict[str, Any]] = []  # {"node", "from", "to"}: a process not running
        self.separations: list[dict[str, Any]] = []  # {"from", "to", "side"}: a partition
        self.locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)  # one per daemon (_down_for)

    async def _down_for(self, names: Sequence[str], seconds: float) -> None:
        """Kill ``names`` together, keep them down ``seconds``, start them again. A process that another
        group's fault holds down (a router_kill and a router kill while settling) is waited for, so
        that one fault never kills a process another is restarting."""
        locks = [self.locks[n] for n in sorted(names)]
        for lock in locks:
            await lock.acquire()
        try:
            await self._kill(names)
            await trio.sleep(seconds)  # the planned downtime
            await self._start(names)
        finally:
            for lock in reversed(locks):
                lock.release()

    async def _kill(self, names: Sequence[str], sig: int = signal.SIGKILL) -> list[int]:
        """Stop ``names`` together (kill -9 by default); their down-time starts now."""
        recs = [{"node": n, "from": self.now(), "to": None} for n in names]
        self.down.extend(recs)
        codes: list[int] = []
        async with trio.open_nursery() as n:
            for name in names:
                n.start_soon(self._stop_one, name, sig, codes)
        return codes

    async def _stop_one(self, name: str, sig: int, codes: list[int]) -> None:
        codes.append(await self.cluster.stop(name, sig))

    async def _start(self, names: Sequence[str]) -> None:
        async with trio.open_nursery() as n:
            for name in names:
                n.start_soon(self.cluster.start, name)
        for rec in self.down:
            if rec["node"] in names and rec["to"] is None:
                rec["to"] = self.now()

    def now(self) -> float:
        return round(trio.current_time() - self.t0, 3)

    async def run_group(self, faults: Sequence[schedule.Fault]) -> None:
        for f in faults:
            await trio.sleep_until(self.t0 + f.at)  # scheduling the fault, not waiting for a condition
            await self.apply(f)

    async def apply(self, f: schedule.Fault) -> None:
        rec: dict[str, Any] = {**f.as_json(), "started": self.now(), "ended": None}
        self.applied.append(rec)
        match f.kind:
            case "fe_kill" | "router_kill":
                await self._down_for([f.target], f.duration)
            case "zone_loss":
                zone = [name for name, z in FRONTENDS if z == f.target]
                rec["killed"] = zone
                await self._down_for(zone, f.duration)
            case "fe_drain":
                # Down from the SIGTERM's answer: the drain hands its homes over before it exits.
                rc = await self.cluster.stop(f.target, signal.SIGTERM)
                self.down.append({"node": f.target, "from": self.now(), "to": None})
                rec["exit_code"] = rc
                if rc != 0:
                    self.anomalies.append({"fault": f.index, "what": f"drain of {f.target} exited {rc}"})
                await trio.sleep(f.duration)
                await self._start([f.target])
            case "partition_fe" | "partition_zone":
                assert self.net is not None
                host = self.net.lone if f.kind == "partition_fe" else self.net.zone
                side = ["fe-b2"] if f.kind == "partition_fe" else [n for n, z in FRONTENDS if z == "a"]
                cut = {"from": self.now(), "to": None, "side": side}
                self.separations.append(cut)
                host.cut()
                try:
                    await trio.sleep(f.duration)
                finally:
                    host.heal()
                    cut["to"] = self.now()
            case "tunnel_cut":
                self.clients[f.target].tunnel.cut(f.duration)
                await trio.sleep(f.duration)
            case "slow_consumer":
                tunnel = self.clients[f.target].tunnel
                tunnel.hold()
                try:
                    rec["burst_messages"] = await self.clients["burst"].burst(
                        FIREHOSE, self.now() + f.duration
                    )
                finally:
                    tunnel.release()
        if f.router is not None:
            # The router pattern: the routers go while the cluster settles from this fault.
            routers = [name for name, _ in ROUTERS] if f.router == "both" else [f.router]
            rec["router_killed_at"] = self.now()
            await self._down_for(routers, f.router_down)
        rec["ended"] = self.now()
        if f.group == "cluster":
            rec["settle_s"] = await self.settle(f.index)

    async def settle(self, index: int | None) -> float | None:
        """Wait until every running daemon sees every other alive, each channel in use has one home
        and a replica in the other zone, and no frontend keeps its zone's place at the witness (a
        zone that committed alone has told the witness its entries are held across zones again):
        until then the cluster is still recovering, and losing that zone is a second fault inside
        the first one's recovery. Returns the seconds it took (None: it never did)."""
        start = trio.current_time()
        self.unsettled = "the map did not converge"
        try:
            await self.cluster.wait_converged(within=SETTLE_TIMEOUT_S)
            with trio.fail_after(SETTLE_TIMEOUT_S):
                await wait_until_async(self._placed)
        except trio.TooSlowError:
            what = {"what": "the cluster did not settle", "at": self.now(), "why": self.unsettled}
            self.anomalies.append({"fault": index, **what})
            return None
        return round(trio.current_time() - start, 2)

    async def _placed(self) -> bool:
        homes: dict[str, list[str]] = defaultdict(list)
        replicas: dict[str, list[str]] = defaultdict(list)
        for fe in self.cluster.frontends:
            self.unsettled = f"{fe.name} is not running or does not answer /cluster"
            if not fe.running:
                return False
            view = None
            with trio.move_on_after(CLUSTER_GET_TIMEOUT_S):  # a stalled daemon must not hang the settle
                try:
                    view = await fe.get_json("/cluster")
                except (OSError, AssertionError, ValueError, trio.BrokenResourceError):
                    return False
            if view is None:
                self.unsettled = f"{fe.name} did not answer /cluster within {CLUSTER_GET_TIMEOUT_S} s"
                return False
            if view.get("write", {}).get("witness_place"):
                self.unsettled = f"{fe.name} keeps its zone's place at the witness"
                return False
            for ch in view["channels"]["home"]:
                homes[ch].append(fe.zone)
            for ch in view["channels"]["replica"]:
                replicas[ch].append(fe.zone)
        in_use = [ch for ch in (*CHANNELS, FIREHOSE) if ch in homes or ch in replicas]
        bad = [ch for ch in in_use if len(homes[ch]) != 1 or not any(z != homes[ch][0] for z in replicas[ch])]
        self.unsettled = f"not placed: {[(ch, homes[ch], replicas[ch]) for ch in bad]}"
        return not bad


def outages(
    clients: Sequence[ChaosClient], applied: Sequence[dict[str, Any]], until: float
) -> dict[str, Any]:
    """Longest client outage per fault kind: a disconnection is a fault's if it began while the fault
    ran, or while the cluster settled from it (``settle_s``), or up to ATTRIBUTE_GRACE_S after, and,
    for a client fault, on that client."""
    longest: dict[str, float] = {}
    unexplained: list[dict[str, Any]] = []
    for c in clients:
        for down, up in c.outages(until):
            kinds = [
                a["kind"]
                for a in applied
                if a["started"]
                <= down
                <= (a["ended"] if a["ended"] is not None else math.inf)
                + (a.get("settle_s") or 0.0)
                + ATTRIBUTE_GRACE_S
                and (
                    a["kind"] in schedule.CLUSTER_KINDS or a["kind"] == "router_kill" or a["target"] == c.name
                )
            ]
            for kind in kinds:
                longest[kind] = max(longest.get(kind, 0.0), up - down)
            if not kinds:
                unexplained.append({"client": c.name, "down": down, "up": up})
    long = [u for u in unexplained if u["up"] - u["down"] >= UNEXPLAINED_OUTAGE_S]
    return {
        "longest_s": {k: (round(v, 3) if math.isfinite(v) else None) for k, v in sorted(longest.items())},
        "unexplained": unexplained[:20],
        "unexplained_long": long[:20],
        "unexplained_long_count": len(long),
    }


async def wait_for(done: Callable[[], bool], within: float) -> bool:
    """Poll ``done()`` until true or ``within`` s pass; returns ``done()``."""
    with trio.move_on_after(within):
        await wait_until(done)
    return bool(done())


def caught_up(c: ChaosClient, last: dict[str, checker.Order], order: checker.EpochOrder) -> bool:
    """Every channel ``c`` subscribes to has delivered its last ACKed serial, or is no longer attached."""
    for log in c.logs():
        top = last.get(log["channel"])
        if top is None or not log["attached_at_end"]:
            continue
        seen = [order(e["serial"]) for e in log["entries"] if e["k"] == "msg"]
        if not seen or max(seen) < top:
            return False
    return True


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """One chaos run; returns the summary and whether it passed."""
    wall0 = time.monotonic()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    usable, why_not = netns.available() if not args.no_netns else (False, "--no-netns")
    specs = roster(args.clients, args.comet_share, args.pipeline)
    with chaos_net() if usable else contextlib.nullcontext() as net:
        targets = targets_for(specs, net)
        faults = schedule.generate(
            args.seed,
            args.faults,
            targets,
            ttl_s=TTL_MS / 1000,
            long_cut_s=LONG_CUT_S,
            patterns=not args.classic,
        )
        if args.only is not None:
            faults = schedule.only(faults, args.only)
        placed: dict[str, tuple[str, list[str]]] = {}
        host = "127.0.0.1"
        if net is not None:
            host = net.root_ip
            placed = {
                name: (h.host_ip, h.exec_prefix())
                for name, h in (("fe-a1", net.zone), ("fe-a2", net.zone), ("fe-b2", net.lone))
            }
        async with (
            run_cluster(
                workdir,
                frontends=FRONTENDS,
                routers=(*ROUTERS, WITNESS),
                zones=ZONES,
                host=host,
                placed=placed,
                connection_state_ttl_ms=TTL_MS,
                max_idle_interval_ms=IDLE_MS,
                presence_linger_ms=PRESENCE_LINGER_MS,
                outbox_limit=OUTBOX_LIMIT,
                drain_timeout_s=DRAIN_TIMEOUT_S,
            ) as cluster,
            trio.open_nursery() as nursery,
        ):
            cluster_up_s = round(time.monotonic() - wall0, 1)
            routers = [(r.host, r.port) for r in cluster.routers if r.name != WITNESS[0]]
            t0 = trio.current_time()
            wall_t0 = time.time()
            clients: dict[str, ChaosClient] = {}
            for spec in specs:
                first, *rest = routers[spec.router :] + routers[: spec.router]
                tunnel = Tunnel(*first, fallbacks=tuple(rest))
                await nursery.start(tunnel.serve)
                clients[spec.name] = ChaosClient(spec=spec, tunnel=tunnel, t0=t0, rate=args.rate)
            with trio.fail_after(CLIENTS_UP_TIMEOUT_S):
                for c in clients.values():
                    await nursery.start(c.run)
            driver = Driver(cluster, net, clients, t0)
            await driver.settle(None)
            load_started = trio.current_time()
            driver.t0 = load_started
            groups: dict[str, list[schedule.Fault]] = defaultdict(list)
            for f in faults:
                groups[f.group].append(f)
            async with trio.open_nursery() as faulting:
                for group in groups.values():
                    faulting.start_soon(driver.run_group, group)
            shift = round(load_started - t0, 3)  # driver times are load-relative; client times t0-relative
            for rec in driver.applied:
                rec["started"] = round(rec["started"] + shift, 3)
                rec["ended"] = round(rec["ended"] + shift, 3) if rec["ended"] is not None else None
            for span in (*driver.down, *driver.separations):
                span["from"] = round(span["from"] + shift, 3)
                span["to"] = round(span["to"] + shift, 3) if span["to"] is not None else None
            final_settle = await driver.settle(None)
            await trio.sleep(TAIL_S)  # publish a little more on the settled cluster
            load_end = round(trio.current_time() - t0, 3)
            for c in clients.values():
                c.stop.set()
            everyone = list(clients.values())
            await wait_for(lambda: all(c.unanswered() == 0 for c in everyone), ANSWER_TIMEOUT_S)
            publishes = [p for c in everyone for p in c.publishes]
            order = checker.EpochOrder([(p["t"], p["serial"]) for p in publishes if p["serial"]])
            last: dict[str, checker.Order] = {}
            for p in publishes:
                if p["outcome"] == "ack":
                    last[p["channel"]] = max(last.get(p["channel"], (-1, -1)), order(p["serial"]))
            caught = await wait_for(
                lambda: all(caught_up(c, last, order) for c in everyone), CATCH_UP_TIMEOUT_S
            )
            logs = [log for c in everyone for log in c.logs()]
            publishes = [dict(p) for p in publishes]
            run_end = round(trio.current_time() - t0, 3)
            log_paths = [(fe.name, fe.log_path) for fe in cluster.frontends]
            nursery.cancel_scope.cancel()

    record = tenures.ClusterRecord(
        events=nodelogs.home_events(log_paths, wall_t0),
        detached=nodelogs.detach_times(log_paths, wall_t0),
        down=driver.down,
        separations=driver.separations,
        retention_s=(TTL_MS + IDLE_MS) / 1000,
        end=run_end,
    )
    verdict = checker.check(
        publishes,
        logs,
        faults=driver.applied,
        ttl_s=TTL_MS / 1000,
        cluster=record,
        presence_linger_s=PRESENCE_LINGER_MS / 1000,
    )
    outage = outages(everyone, driver.applied, load_end)
    outcomes = Counter(p["outcome"] for p in publishes)
    summary: dict[str, Any] = {
        "seed": args.seed,
        "faults_scheduled": len(faults),
        "faults_applied": dict(sorted(Counter(a["kind"] for a in driver.applied).items())),
        "faults_applied_total": len(driver.applied),
        "partitions": "network namespaces" if net is not None else f"none ({why_not})",
        "clients": {
            "total": len(specs),
            "by_transport": dict(Counter(s.transport for s in specs)),
            "by_format": dict(Counter(s.format for s in specs)),
            "publishers": sum(1 for s in specs if s.publishes or s.bursts),
            "subscribers": sum(1 for s in specs if s.subscribes),
            "stopped_early": {c.name: c.error for c in everyone if c.error},
        },
        "messages": {
            "published": len(publishes),
            "acked": outcomes["ack"],
            "nacked": outcomes["nack"],
            "failed": outcomes["failed"],
            "indeterminate": outcomes["indeterminate"],
            "delivered": verdict.delivered,
            "announced_lost": verdict.announced_lost,
        },
        "violations": verdict.counts,
        "lost": verdict.counts["lost"],
        "duplicated": verdict.counts["duplicated"],
        "out_of_order": verdict.counts["out_of_order"],
        "silent_gaps": verdict.counts["silent_gap"],
        "serial_backwards": verdict.counts["serial_backwards"],
        "publisher_order": verdict.counts["publisher_order"],
        "discontinuity_within_ttl": verdict.counts["discontinuity_within_ttl"],
        "two_homes": verdict.counts["two_homes"],
        "stale_home": verdict.counts["stale_home"],
        "announced_discontinuities": {
            "count": len(verdict.announced),
            "causes": verdict.causes(),
            "samples": verdict.announced[:5],
        },
        "outage": outage,
        "caught_up_at_end": caught,
        "not_attached_at_end": verdict.not_attached_at_end,
        "settle": {
            "final_s": final_settle,
            "max_s": max((a.get("settle_s") or 0 for a in driver.applied), default=0),
        },
        "anomalies": driver.anomalies,
        "cluster_up_s": cluster_up_s,
        "wall_s": round(time.monotonic() - wall0, 1),
    }
    problems = []
    if len(driver.applied) != len(faults):
        problems.append(f"applied {len(driver.applied)} of {len(faults)} faults")
    if outcomes["ack"] == 0 or verdict.delivered == 0:
        problems.append("nothing was ACKed or delivered: the run proves nothing")
    if not caught:
        problems.append("some attached subscriber never caught up with the last ACKed serial")
    if outage["unexplained_long_count"]:
        problems.append(
            f"{outage['unexplained_long_count']} outage(s) of {UNEXPLAINED_OUTAGE_S:g} s or more"
            " that no fault explains"
        )
    ok = verdict.ok and not problems
    summary["problems"] = problems
    summary["ok"] = ok
    if not ok:
        summary["examples"] = verdict.examples
        summary["reproduction"] = reproduction(args, faults, driver.applied, verdict, publishes)
    if args.workdir or not ok:
        summary["workdir"] = str(workdir)
        run_json = {
            "summary": summary,
            "faults": driver.applied,
            "publishes": publishes,
            "logs": logs,
            "down": driver.down,
            "separations": driver.separations,
            "home_events": list(record.events),
            "wall_t0": wall_t0,
        }
        (workdir / "run.json").write_text(json.dumps(run_json))
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary, ok


def reproduction(
    args: argparse.Namespace,
    faults: Sequence[schedule.Fault],
    applied: Sequence[dict[str, Any]],
    verdict: checker.Verdict,
    publishes: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The seed and the faults that can explain the violations (all of them if none can), and how to
    replay just those."""
    ack_t = {p["serial"]: p["t"] for p in publishes if p["serial"]}
    times = [ex.get("t", ack_t.get(ex.get("serial"))) for ex in verdict.examples]
    blamed: set[int] = set()
    for t in times:
        if t is not None:
            blamed.update(schedule.implicated(applied, t))
    chosen = [f for f in faults if f.index in blamed] or list(faults)
    only = ",".join(str(f.index) for f in chosen)
    return {
        "seed": args.seed,
        "faults": [f.as_json() for f in chosen],
        "command": f"make chaos FAULTS={args.faults} SEED={args.seed} CLIENTS={args.clients} ONLY={only}"
        + (" CLASSIC=1" if args.classic else "")
        + (f" PIPELINE={args.pipeline}" if args.pipeline != PIPELINE else ""),
    }


@contextlib.contextmanager
def _interrupts_as_keyboard() -> Iterator[None]:
    """A shell without job control starts background jobs with SIGINT ignored: take SIGTERM like it."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_only(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faults", type=int, default=20, help="faults to apply (default 20)")
    p.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    p.add_argument(
        "--clients", type=int, default=30, help="load clients besides slow/fh-watch/burst (default 30)"
    )
    p.add_argument("--rate", type=float, default=3.0, help="publishes/s per publishing client and channel")
    p.add_argument(
        "--comet-share",
        type=float,
        default=0.3,
        help="fraction of the load clients on Comet (default 0.3; 0: WebSocket only)",
    )
    p.add_argument(
        "--pipeline",
        type=int,
        default=PIPELINE,
        help=f"publishes each 'pub' client keeps in flight (default {PIPELINE}; 1: await each ACK)",
    )
    p.add_argument("--only", type=parse_only, default=None, help="replay only these fault indices (a,b,c)")
    p.add_argument("--no-netns", action="store_true", help="no network namespaces (and so no partitions)")
    p.add_argument(
        "--classic",
        action="store_true",
        help="the schedule without zone losses and router kills while settling (as seeds ran before them)",
    )
    p.add_argument("--workdir", help="keep daemon logs and run.json here (a failing run always keeps them)")
    args = p.parse_args(argv)
    if (
        args.faults < 1
        or args.clients < 4
        or args.rate <= 0
        or not 0 <= args.comet_share <= 1
        or args.pipeline < 1
    ):
        p.error("--faults >= 1, --clients >= 4, --rate > 0, 0 <= --comet-share <= 1 and --pipeline >= 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    try:
        with _interrupts_as_keyboard():
            summary, ok = trio.run(run, args)
    except KeyboardInterrupt:
        sys.exit("interrupted; every process this run started has been stopped")
    print(json.dumps(summary, indent=2))
    sys.exit(0 if ok else 1)

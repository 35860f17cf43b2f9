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

# Here: the run itself, the end-of-run checks (outages, catch-up) and the command line. The cluster's
# shape, the clients and the fault targets are in config.py; applying the faults and settling in driver.py.

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
from bench.chaos.config import (  # noqa: E402
    DRAIN_TIMEOUT_S,
    FRONTENDS,
    IDLE_MS,
    LONG_CUT_S,
    OUTBOX_LIMIT,
    PIPELINE,
    PRESENCE_LINGER_MS,
    ROUTERS,
    TTL_MS,
    WITNESS,
    ZONES,
    roster,
    targets_for,
)
from bench.chaos.driver import Driver  # noqa: E402
from bench.chaos.load import ChaosClient  # noqa: E402
from bench.chaos.net import chaos_net  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.cluster import run_cluster  # noqa: E402
from tests.support.streams import wait_until  # noqa: E402
from tests.support.tunnel import Tunnel  # noqa: E402

TAIL_S = 3.0
ANSWER_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 40.0
ATTRIBUTE_GRACE_S = 5.0  # a disconnection starting this long after a fault ended is still its doing
UNEXPLAINED_OUTAGE_S = 1.0  # a client outage this long that no fault explains fails the run
NEAR_S = 3.0  # a failing run reports the frontends' warnings this close to its first violation
# A bound on connecting and attaching every client, not a wait: at load 26 on the shared 2-core
# machine 33 clients did not all attach within 120 s, which crashed a run before its first fault.
CLIENTS_UP_TIMEOUT_S = 300.0


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
        first = next((ex["t"] for ex in verdict.examples if isinstance(ex.get("t"), (int, float))), None)
        if first is not None:  # what the cluster logged around the first violation (CI keeps no workdir)
            summary["cluster_log_near_first"] = nodelogs.around(log_paths, wall_t0, first, NEAR_S)
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

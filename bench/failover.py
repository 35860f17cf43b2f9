"""Failover benchmark: ``kill -9`` of the frontend that owns the most subscribers, on a real local cluster.

    python bench/failover.py --clients 200 --procs 4 --rate 50

Starts frontends in 2 zones (``--frontends``, see ``TOPOLOGIES``) and a router (``tests/support/cluster.py``)
in a temporary workdir, connects ``--clients`` subscribers through the router with
the client SDK, spread over ``--procs`` worker processes
(``bench/failover_worker.py``), and one publisher (in this process) sending
numbered messages at ``--rate`` per second, round-robin over ``--channels``
channels, throughout. With ``--frontends 2+1`` (or ``2+2``) it then starts a
spare frontend in the victim's zone (or one in each zone) and waits until every
daemon sees it alive and every channel's home is where the new map puts it, so
that the kill leaves both zones alive with ~``--clients``/2 connections on the
victim. After ``--warmup`` seconds it ``kill -9``s the frontend
owning the most subscribers (not the publisher's, if another owns any), then
measures, for every subscriber that was on it, the time until it is CONNECTED
again under the same connectionId and caught up (see ``DEFINITION``). It then
publishes ``--tail`` seconds more, stops, and checks exactly-once, in-order
delivery for every subscriber over the whole run.

Prints one JSON object. The workdir (node logs: ``<node>.log``, ``raw.json``) is
kept, and named in the JSON (``workdir``), only when a correctness check fails
(``correctness``: nothing lost, duplicated or reordered, no connectionId changed,
every worker reported), or always with ``--keep``; a missed latency goal alone
does not keep it.
"""

# The run, its options and DEFINITION are here; the publisher and the subscriber workers are in
# failover_load.py, the homes, the victim, CPU and profiles in failover_cluster.py, the figures and the
# log timeline in failover_analysis.py, where the time goes (stages_s) in failover_stages.py.

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import failover_stages  # noqa: E402
from bench.failover_analysis import analyse, log_timeline, percentiles  # noqa: E402
from bench.failover_cluster import (  # noqa: E402
    choose_victim,
    cpu_seconds,
    profile_start,
    profile_stop,
    settle_homes,
)
from bench.failover_load import Publish, Publisher, WorkerProc, start_workers, stop_workers  # noqa: E402
from tests.support.cluster import run_cluster  # noqa: E402
from tests.support.streams import parse_serial  # noqa: E402

CHANNEL_PREFIX = "bench:failover:"  # as in failover_worker.py
READY_TIMEOUT = 180.0  # s for every subscriber to connect; plus READY_PER_CLIENT each beyond 1,000
READY_PER_CLIENT = 0.15
RESULT_TIMEOUT = 60.0
# --frontends: name -> (frontends started with the cluster, spares started after the subscribers connected,
# how many of the spares to start: "all", or "victim" for the one in the victim's zone).
# - "4": two per zone from the start (an owner of N connections needs ~4N clients).
# - "2": one per zone. The victim is then the only frontend of its zone, and a home does not ACK while no
#   frontend of the other zone is reachable (commit 67eebf9): publishing stalls after the kill.
# - "2+1": one per zone while the clients connect (through the router: ~half on each), then a spare in the
#   victim's zone, so the kill leaves both zones alive and the victim owns ~clients/2 (make bench).
# - "2+2": the same with a spare started in each zone.
SPARES = (("fe-a2", "a"), ("fe-b2", "b"))
TOPOLOGIES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], str]] = {
    "4": ((("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"), ("fe-b2", "b")), (), "all"),
    "2": ((("fe-a1", "a"), ("fe-b1", "b")), (), "all"),
    "2+1": ((("fe-a1", "a"), ("fe-b1", "b")), SPARES, "victim"),
    "2+2": ((("fe-a1", "a"), ("fe-b1", "b")), SPARES, "all"),
}
HOMES_SETTLE_TIMEOUT = 30.0  # s for every channel's home to move where the map with the spares puts it

DEFINITION = " ".join(
    [
        "With --frontends 2+1 or 2+2, the spares start after every subscriber connected and before the",
        "warmup, once every daemon sees them alive and every channel's home is where the new map puts it",
        "(the victim is chosen before the spares start with 2+1, so that its zone keeps a frontend).",
        "kill_t is time.time() just before SIGKILL is sent to the victim.",
        "An affected client is a subscriber whose connection was on the victim at kill_t.",
        "For each channel, the probe is the first publish sent after kill_t that was ACKed, and needed =",
        "every ACKed publish whose serial is <= the probe's (so: everything ACKed before the kill, anything",
        "in flight across it, and the probe); only serials after the subscriber's attach serial count.",
        "An affected client is caught up at max(t_connected, t_needed), where t_connected is its first",
        "CONNECTED after kill_t (it must carry the same connectionId, else it counts in",
        "connection_ids_changed and never catches up) and t_needed is when the last of its needed messages",
        "first arrived. failover_s = caught-up time - kill_t; reconnect_s = t_connected - kill_t;",
        "disconnect_noticed_s = when the client SDK left CONNECTED - kill_t.",
        "Clients that never catch up within --timeout count as +inf in the percentiles (shown as null).",
        "lost = publishes ACKed with a serial after the subscriber's attach serial that it never received",
        "(whole run, every subscriber); duplicated = messages received again with a serial already received;",
        "reordered = a message whose serial is not the previous one + 1 in the same epoch.",
    ]
)


def note(msg: str) -> None:
    """A progress line on stderr (stdout carries the JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] failover: {msg}", file=sys.stderr, flush=True)


async def wait_for(done: Callable[[], bool], within: float) -> bool:
    """Poll ``done()`` until it holds or ``within`` s pass; returns ``done()``."""
    with trio.move_on_after(within):
        while True:
            if done():
                break
            await trio.sleep(0.02)
    return done()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall0 = time.monotonic()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="failover-"))
    workdir.mkdir(parents=True, exist_ok=True)
    channels = [f"{CHANNEL_PREFIX}{i}" for i in range(args.channels)]
    workers: list[WorkerProc] = []
    phases: dict[str, float] = {}
    started, spares, which_spares = TOPOLOGIES[args.frontends]
    late: list[str] = []
    settled: dict[str, list[str]] = {}
    homes_ok: bool | None = None
    try:
        async with (
            run_cluster(workdir, frontends=started, spare=spares) as cluster,
            trio.open_nursery() as nursery,
        ):
            phases["cluster_up_s"] = round(time.monotonic() - wall0, 2)
            note(f"cluster up; connecting {args.clients} subscribers")
            url = cluster.router_url()
            pub = Publisher(channels, args.rate)
            await nursery.start(pub.run, url)
            t = time.monotonic()
            workers = await start_workers(nursery, workdir, url, args)
            with trio.fail_after(READY_TIMEOUT + READY_PER_CLIENT * max(0, args.clients - 1000)):
                for w in workers:
                    await w.got_ready.wait()
            phases["clients_connected_s"] = round(time.monotonic() - t, 2)
            note(f"subscribers connected in {phases['clients_connected_s']} s; warming up")
            ready = [s for w in workers for s in (w.ready or {}).get("subs", [])]
            connect_errors = [s["error"] for s in ready if s["error"]]
            owners = Counter(s["server"] for s in ready if not s["error"])
            victim_policy = args.victim
            if spares:
                if which_spares == "victim":
                    # The spare must be in the victim's zone: choose the victim now (ownership does not
                    # move when a frontend joins, so "most" picks the same one at kill time).
                    victim_policy = choose_victim(owners, pub.server, await cluster.homes(), args.victim)
                    zone = cluster.nodes[victim_policy].zone
                    late = [name for name, z in spares if z == zone][:1]
                else:
                    late = [name for name, _ in spares]
                t = time.monotonic()
                for name in late:
                    await cluster.start(name)
                await cluster.wait_converged()
                phases["spares_alive_everywhere_s"] = round(time.monotonic() - t, 2)
                settled, homes_ok = await settle_homes(cluster, channels, HOMES_SETTLE_TIMEOUT)
                phases["homes_settled_s"] = round(time.monotonic() - t, 2)
                note(f"started {', '.join(late)}: alive in every map; homes {settled} (settled: {homes_ok})")
            pids = {n.name: n.process.pid for n in cluster.nodes.values() if n.process is not None}
            pids |= {f"worker{i}": w.proc.pid for i, w in enumerate(workers)} | {"bench": os.getpid()}
            cpu0, t0 = {k: cpu_seconds(pid) for k, pid in pids.items()}, time.monotonic()
            await trio.sleep(args.warmup)
            span = time.monotonic() - t0
            cpu_warmup = {k: round((cpu_seconds(pid) - cpu0[k]) / span, 2) for k, pid in pids.items()}

            load_at_kill = os.getloadavg()
            channel_homes = await cluster.homes()
            victim = choose_victim(owners, pub.server, channel_homes, victim_policy)
            zones_after_kill = sorted(
                {fe.zone for fe in cluster.frontends if fe.running and fe.name != victim}
            )
            spies = profile_start(args, {k: v for k, v in pids.items() if k != victim and k != "bench"})
            cpu_kill = {k: cpu_seconds(pid) for k, pid in pids.items() if k != victim}
            kill_t = time.time()
            await cluster.kill(victim)
            note(f"killed {victim} (owner of {owners[victim]}); waiting for catch-up")
            for w in workers:
                await w.send({"cmd": "kill", "t": kill_t, "victim": victim})

            # The probe: the first publish sent after kill_t that was ACKed (DEFINITION).
            def probe(ch: str) -> Publish | None:
                for r in pub.records:
                    if r.channel != ch or r.sent_t <= kill_t or r.error is not None:
                        continue
                    return r if r.serial is not None else None  # None: still in flight
                return None

            await wait_for(lambda: all(probe(ch) for ch in channels), args.timeout)
            needed: dict[str, list[str]] = {}
            probes: dict[str, dict[str, float] | None] = {}
            for ch in channels:
                p = probe(ch)
                if p is None or p.serial is None or p.ack_t is None:
                    needed[ch], probes[ch] = [], None
                    continue
                top = parse_serial(p.serial)
                needed[ch] = [r.serial for r in pub.acked(ch) if r.serial and parse_serial(r.serial) <= top]
                probes[ch] = {
                    "sent_after_kill_s": round(p.sent_t - kill_t, 3),
                    "acked_after_kill_s": round(p.ack_t - kill_t, 3),
                }
            for w in workers:
                await w.send({"cmd": "need", "serials": needed})
            remaining = args.timeout - (time.time() - kill_t)
            await wait_for(
                lambda: all(
                    w.progress is not None and w.progress["caught"] == w.progress["affected"] for w in workers
                ),
                max(0.0, remaining),
            )
            phases["failover_wait_s"] = round(time.time() - kill_t, 2)
            span = phases["failover_wait_s"]
            cpu_failover = {k: round((cpu_seconds(pids[k]) - c) / span, 2) for k, c in cpu_kill.items()}
            profiles = await profile_stop(spies)
            note(f"catch-up wait over after {phases['failover_wait_s']} s; draining")
            await trio.sleep(args.tail)
            pub.stop.set()
            await wait_for(lambda: all(r.serial or r.error for r in pub.records), 15)
            last = {}
            for ch in channels:
                acked = pub.acked(ch)
                if acked:
                    last[ch] = max((r.serial for r in acked if r.serial), key=parse_serial)
            for w in workers:
                await w.send({"cmd": "stop", "last": last})
            with trio.move_on_after(args.drain + RESULT_TIMEOUT):
                for w in workers:
                    await w.got_result.wait()
            results = [s for w in workers for s in (w.result or {}).get("subs", [])]
            latency = [x for w in workers for x in (w.result or {}).get("latency_sample", [])]
            missing_results = sum(1 for w in workers if w.result is None)
            nursery.cancel_scope.cancel()
    finally:
        await stop_workers(workers)

    out = analyse(args, pub, results, kill_t, victim, channel_homes, owners, needed)
    out["spares_started_after_connect"] = late
    out["home_claims_after_spares"] = settled
    out["homes_settled_after_spares"] = homes_ok
    out["zones_with_a_frontend_after_kill"] = zones_after_kill
    out["probe_publish"] = probes
    ack_latency = sorted(r.ack_t - r.sent_t for r in pub.records if r.ack_t is not None)
    out["publish_ack_latency_s"] = percentiles(ack_latency)
    out["connect_errors"] = len(connect_errors)
    out["connect_error_samples"] = connect_errors[:3]
    out["workers_without_result"] = missing_results
    out["phases"] = phases
    out["delivery_latency_before_kill_s"] = percentiles(latency)
    out["loadavg_1_5_15_at_kill"] = [round(x, 2) for x in load_at_kill]
    if (out["delivery_latency_before_kill_s"]["p50"] or 0) > 0.25:
        out["warning"] = (
            "subscribers were already lagging before the kill (see delivery_latency_before_kill_s): "
            "the machine is overloaded, and the failover figures include that backlog"
        )
    out["cpu_cores_busy_during_warmup"] = cpu_warmup | {"total": round(sum(cpu_warmup.values()), 2)}
    out["cpu_cores_busy_kill_to_caught_up"] = cpu_failover | {"total": round(sum(cpu_failover.values()), 2)}
    if profiles:
        out["profiles"] = profiles
    out["kill_t"] = kill_t
    out["log_timeline_after_kill"] = log_timeline(workdir, kill_t, victim)
    out |= failover_stages.stages(workdir, kill_t, victim, results)
    out["wall_s"] = round(time.monotonic() - wall0, 2)
    out["cpus"] = os.cpu_count()
    out["definition"] = DEFINITION
    out["correctness"]["every_worker_reported"] = missing_results == 0
    out["correct"] = all(out["correctness"].values())
    if args.keep or not out["correct"]:
        out["workdir"] = str(workdir)
        raw = {"kill_t": kill_t, "clients": results, "publishes": [vars(r) for r in pub.records]}
        (workdir / "raw.json").write_text(json.dumps(raw))
        note(f"workdir kept: {workdir} (node logs, raw.json)")
    else:
        out["workdir"] = None
        shutil.rmtree(workdir, ignore_errors=True)
    return out


async def run_until_signalled(args: argparse.Namespace) -> dict[str, Any]:
    """``run``, stopped cleanly (cluster and workers killed) by SIGINT or SIGTERM.

    SIGINT is watched explicitly because a shell without job control starts
    background jobs with SIGINT ignored, which would leave Ctrl-C to nobody.
    """
    result: dict[str, Any] = {}
    signalled = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal signalled
                async for _ in signals:
                    signalled = True
                    nursery.cancel_scope.cancel()
                    return

            async def main_task() -> None:
                result.update(await run(args))
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(main_task)
    if signalled:
        raise KeyboardInterrupt
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="subscribers (default 200)")
    p.add_argument("--procs", type=int, default=4, help="worker processes for the subscribers (default 4)")
    p.add_argument("--rate", type=float, default=50, help="publishes/s, over all channels (default 50)")
    p.add_argument("--channels", type=int, default=1, help="channels; subscriber i is on i %% channels")
    p.add_argument(
        "--frontends",
        choices=list(TOPOLOGIES),
        default="4",
        help="topology: 4 (two per zone, default); 2+1 (one per zone while the clients connect, so the "
        "victim owns about half of them, then a spare in the victim's zone, so the kill leaves both zones "
        "alive: --clients 2000 gives an owner of ~1,000); 2+2 (a spare in each zone); 2 (one per zone, no "
        "spare: publishing stalls after the kill, as no zone may ACK alone)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the clients' backoff jitter (ports, "
        "connection ids and scheduling still vary from run to run)",
    )
    p.add_argument("--warmup", type=float, default=3.0, help="s of steady publishing before the kill")
    p.add_argument("--tail", type=float, default=2.0, help="s of publishing after everyone caught up")
    p.add_argument("--timeout", type=float, default=30.0, help="s after the kill to wait for catch-up")
    p.add_argument("--drain", type=float, default=15.0, help="s for subscribers to receive the last message")
    p.add_argument(
        "--victim",
        default="most",
        help="frontend to kill: 'most' (default: the one owning most subscribers, not the publisher's), "
        "'most-not-home' (same, but no channel's home, if possible), 'home' (the channel home), or a name",
    )
    p.add_argument(
        "--profile", metavar="DIR", help="py-spy every surviving process from the kill; raw stacks in DIR"
    )
    p.add_argument("--profile-s", type=int, default=8, help="seconds of --profile sampling (default 8)")
    p.add_argument("--workdir", help="keep node logs here (default: a temp dir)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the workdir even if every goal is met, "
        "with raw.json: every publish and every client's receipt times",
    )
    args = p.parse_args()
    if args.clients < 1 or args.procs < 1 or args.rate <= 0 or args.channels < 1:
        p.error("--clients, --procs, --channels must be >= 1 and --rate > 0")
    try:
        out = trio.run(run_until_signalled, args)
    except KeyboardInterrupt:
        sys.exit("interrupted; every process this run started has been stopped")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

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

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import continuity as client  # noqa: E402
from bench import failover_stages  # noqa: E402
from kernel.placement import rendezvous_order  # noqa: E402
from tests.support.cluster import LocalCluster, run_cluster  # noqa: E402
from tests.support.procs import API_KEY  # noqa: E402
from tests.support.streams import FAST_BACKOFF, parse_serial  # noqa: E402

WORKER = Path(__file__).resolve().parent / "failover_worker.py"
CHANNEL_PREFIX = "bench:failover:"  # as in failover_worker.py
PUBLISH_WINDOW = 64  # publishes in flight at once
READY_TIMEOUT = 180.0  # s for every subscriber to connect; plus READY_PER_CLIENT each beyond 1,000
READY_PER_CLIENT = 0.15
RESULT_TIMEOUT = 60.0
GOAL_P99_S = 2.0
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
LOG_EVENT_PREFIXES = ("connection.", "route.", "channel.", "member.suspect", "member.dead", "peer.link_lost")

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


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p99/max, rounded to ms; ``inf`` entries (never caught up) come out as None."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float | None:
        v = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        return None if math.isinf(v) else round(v, 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": rank(1.0)}


# ---------------------------------------------------------------------------------------------- publisher


@dataclass
class Publish:
    n: int
    channel: str
    sent_t: float
    ack_t: float | None = None
    serial: str | None = None
    error: str | None = None


@dataclass
class Publisher:
    """Publishes ``{"n": i}`` at ``rate``/s, message i on channel i % len(channels), a window in flight."""

    channels: list[str]
    rate: float
    records: list[Publish] = field(default_factory=list)
    stop: trio.Event = field(default_factory=trio.Event)
    server: str = ""

    async def run(self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with client.connect(url, key=API_KEY, backoff=FAST_BACKOFF, echo=False) as conn:
            self.server = str(conn.details.get("serverId", "")).removeprefix("continuity.")
            chans = [conn.channel(c) for c in self.channels]
            for ch in chans:
                await ch.attach()
            task_status.started()
            window = trio.Semaphore(PUBLISH_WINDOW)
            async with trio.open_nursery() as nursery:
                start = trio.current_time()
                n = 0
                while not self.stop.is_set():
                    with trio.move_on_at(start + n / self.rate):
                        await self.stop.wait()
                    if self.stop.is_set():
                        break
                    await window.acquire()
                    rec = Publish(n=n, channel=self.channels[n % len(chans)], sent_t=time.time())
                    self.records.append(rec)
                    nursery.start_soon(self._one, chans[n % len(chans)], rec, window)
                    n += 1

    async def _one(self, ch: client.Channel, rec: Publish, window: trio.Semaphore) -> None:
        try:
            [serial] = await ch.publish("n", {"n": rec.n, "t": rec.sent_t})
            rec.serial, rec.ack_t = serial, time.time()
        except (client.ClientError, trio.TooSlowError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            window.release()

    def acked(self, channel: str) -> list[Publish]:
        return [r for r in self.records if r.channel == channel and r.serial is not None]


# ---------------------------------------------------------------------------------------------- workers


class WorkerProc:
    """A ``failover_worker.py`` subprocess: commands as JSON lines on stdin, reports on stdout."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.ready: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.progress: dict[str, Any] | None = None
        self.got_ready = trio.Event()
        self.got_result = trio.Event()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while chunk := await self.proc.stdout.receive_some(1 << 20):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["type"] == "ready":
                    self.ready = msg
                    self.got_ready.set()
                elif msg["type"] == "progress":
                    self.progress = msg
                elif msg["type"] == "result":
                    self.result = msg
                    self.got_result.set()

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(obj).encode() + b"\n")


async def start_workers(
    nursery: trio.Nursery, workdir: Path, url: str, args: argparse.Namespace
) -> list[WorkerProc]:
    base, extra = divmod(args.clients, args.procs)
    per = [base + (1 if i < extra else 0) for i in range(args.procs)]
    workers, first = [], 0
    for i, count in enumerate(per):
        if count == 0:
            continue
        err = open(workdir / f"worker{i}.err", "ab")  # noqa: ASYNC230 (handed to the child)
        try:
            proc = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    str(WORKER),
                    "--url",
                    url,
                    "--count",
                    str(count),
                    "--first",
                    str(first),
                    "--channels",
                    str(args.channels),
                    "--drain",
                    str(args.drain),
                    "--seed",
                    str(args.seed),
                    *(["--dump-times"] if args.keep else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=str(ROOT),
            )
        finally:
            err.close()
        w = WorkerProc(proc)
        workers.append(w)
        nursery.start_soon(w.read)
        first += count
    return workers


async def stop_workers(workers: list[WorkerProc]) -> None:
    with trio.CancelScope(shield=True):
        for w in workers:
            if w.proc.returncode is None:
                w.proc.kill()
            with trio.move_on_after(5):
                await w.proc.wait()


# ---------------------------------------------------------------------------------------------- the run


async def homes(cluster: LocalCluster) -> dict[str, str]:
    """channel -> the running frontend that is its home."""
    out = {}
    for fe in cluster.frontends:
        if fe.running:
            for ch in (await fe.get_json("/cluster"))["channels"]["home"]:
                out[ch] = fe.name
    return out


async def settle_homes(
    cluster: LocalCluster, channels: list[str], within: float
) -> tuple[dict[str, list[str]], bool]:
    """Wait (at most ``within`` s) until each channel is home on exactly one running frontend, the first
    of its rendezvous order over the running frontends (the placement every daemon computes once the
    spares joined). Returns (channel -> the frontends claiming it at the end, whether that happened)."""
    running = [fe.name for fe in cluster.frontends if fe.running]
    want = {ch: rendezvous_order(ch, running)[0] for ch in channels}
    claims: dict[str, list[str]] = {}
    with trio.move_on_after(within):
        while True:
            claims = {ch: [] for ch in channels}
            for fe in cluster.frontends:
                if fe.running:
                    for ch in (await fe.get_json("/cluster"))["channels"]["home"]:
                        claims.setdefault(ch, []).append(fe.name)
            if all(claims[ch] == [want[ch]] for ch in channels):
                return claims, True
            await trio.sleep(0.1)
    return claims, False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


Spy = tuple[str, subprocess.Popen[bytes], Path]


def profile_start(args: argparse.Namespace, pids: dict[str, int]) -> list[Spy]:
    """``--profile DIR``: ``py-spy record`` on every surviving process from just before the kill."""
    if not args.profile:
        return []
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        raw = out / f"{name}.raw"
        cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration"]
        cmd += [str(args.profile_s), "--rate", "100", "--nonblocking", "--format", "raw"]
        cmd += ["--output", str(raw)]
        spies.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw))
    return spies


async def profile_stop(spies: list[Spy]) -> dict[str, str]:
    """Wait for the profilers (they stop after ``--profile-s``); the raw stacks' paths."""
    out = {}
    for name, proc, raw in spies:
        try:
            await trio.to_thread.run_sync(lambda: proc.wait(timeout=60))  # noqa: B023
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if raw.exists():
            out[name] = str(raw)
    return out


def choose_victim(owners: Counter[str], publisher_server: str, homes: dict[str, str], policy: str) -> str:
    """The frontend to kill: ``most`` owns the most subscribers (not the publisher's frontend if another
    owns any); ``most-not-home`` the same among frontends that are no channel's home (if any); ``home``
    the home of the first channel; anything else is a node name."""
    if policy not in ("most", "most-not-home", "home"):
        return policy
    if policy == "home":
        return homes[min(homes)]
    candidates = Counter({k: v for k, v in owners.items() if k and k != publisher_server}) or owners
    if policy == "most-not-home":
        candidates = Counter({k: v for k, v in candidates.items() if k not in homes.values()}) or candidates
    return candidates.most_common(1)[0][0]


def log_timeline(workdir: Path, kill_t: float, victim: str) -> dict[str, dict[str, Any]]:
    """From the nodes' JSON logs: for each takeover/route/channel/membership event logged after kill_t,
    how many there were and when the first and last came (s after kill_t), and on which nodes."""
    spans: dict[str, dict[str, Any]] = {}
    for path in sorted(workdir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
                event = rec["event"]
                t = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if t < kill_t or not event.startswith(LOG_EVENT_PREFIXES):
                continue
            if event.startswith("member.") and rec.get("name") != victim:
                continue
            if event == "route.decided":
                event = f"route.decided:{rec.get('reason')}"
            span = spans.setdefault(
                event, {"count": 0, "first_s": t - kill_t, "last_s": t - kill_t, "nodes": []}
            )
            span["count"] += 1
            span["first_s"] = min(span["first_s"], t - kill_t)
            span["last_s"] = max(span["last_s"], t - kill_t)
            if path.stem not in span["nodes"]:
                span["nodes"].append(path.stem)
    for span in spans.values():
        span["first_s"], span["last_s"] = round(span["first_s"], 3), round(span["last_s"], 3)
    return dict(sorted(spans.items(), key=lambda kv: kv[1]["first_s"]))


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
                    victim_policy = choose_victim(owners, pub.server, await homes(cluster), args.victim)
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
            channel_homes = await homes(cluster)
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


def analyse(
    args: argparse.Namespace,
    pub: Publisher,
    results: list[dict[str, Any]],
    kill_t: float,
    victim: str,
    channel_homes: dict[str, str],
    owners: Counter[str],
    needed: dict[str, list[str]],
) -> dict[str, Any]:
    acked_by_channel = {ch: {r.serial for r in pub.acked(ch) if r.serial} for ch in pub.channels}
    lost = dup = reordered = epoch_changes = unacked_received = 0
    lost_samples: list[dict[str, Any]] = []
    ids_changed = 0
    failover: list[float] = []
    reconnect: list[float] = []
    others: list[float] = []
    noticed: list[float] = []
    affected = not_caught = not_reconnected = 0
    for s in results:
        received = {f"{ep}:{n}" for ep, runs in s["ranges"].items() for a, b in runs for n in range(a, b + 1)}
        attach = parse_serial(s["attach"]) if s["attach"] else None
        expected = {
            x
            for x in acked_by_channel[s["channel"]]
            if attach is None or parse_serial(x)[0] != attach[0] or parse_serial(x)[1] > attach[1]
        }
        missing = expected - received
        lost += len(missing)
        if missing and len(lost_samples) < 5:
            lost_samples.append(
                {
                    "client": s["i"],
                    "id": s["first_id"],
                    "server_at_kill": s.get("server_at_kill"),
                    "lost": len(missing),
                    "first": sorted(missing, key=parse_serial)[:5],
                }
            )
        unacked_received += len(received - acked_by_channel[s["channel"]])
        dup += s["dupes"]
        reordered += s["reorders"]
        epoch_changes += s["epoch_changes"]
        changed = bool(s["first_id"]) and s["ids"] != [s["first_id"]]
        ids_changed += changed
        if s.get("server_at_kill") == victim:
            affected += 1
            noticed.append(math.inf if s.get("disconnected") is None else s["disconnected"] - kill_t)
            ok_reconnect = s.get("reconnect_t") is not None and s.get("reconnect_id") == s["first_id"]
            if ok_reconnect:
                reconnect.append(s["reconnect_t"] - kill_t)
            else:
                not_reconnected += 1
                reconnect.append(math.inf)
            if ok_reconnect and not changed and s.get("caught_t") is not None:
                failover.append(max(s["reconnect_t"], s["caught_t"]) - kill_t)
            else:
                not_caught += 1
                failover.append(math.inf)
        elif s.get("caught_t") is not None:
            others.append(max(0.0, s["caught_t"] - kill_t))
    fo = percentiles(failover)
    nacks = [r for r in pub.records if r.error]
    return {
        "benchmark": "failover",
        "frontends": args.frontends,
        "clients": args.clients,
        "clients_with_results": len(results),
        "procs": args.procs,
        "channels": args.channels,
        "rate_per_s": args.rate,
        "seed": args.seed,
        "subscribers_per_frontend": dict(sorted(owners.items())),
        "publisher_on": pub.server,
        "channel_homes_at_kill": channel_homes,
        "victim": victim,
        "victim_was_home_of": sorted(ch for ch, fe in channel_homes.items() if fe == victim),
        "affected_clients": affected,
        "failover_to_caught_up_s": fo,
        "reconnect_s": percentiles(reconnect),
        "disconnect_noticed_s": percentiles(noticed),
        "not_caught_up": not_caught,
        "not_reconnected_same_id": not_reconnected,
        "unaffected_caught_up_s": percentiles(others),
        "needed_messages_per_channel": {ch: len(v) for ch, v in needed.items()},
        "published": len(pub.records),
        "acked": sum(1 for r in pub.records if r.serial),
        "publish_failures": len(nacks),
        "publish_failure_samples": [r.error for r in nacks[:3]],
        "lost": lost,
        "lost_samples": lost_samples,
        "duplicated": dup,
        "reordered": reordered,
        "epoch_changes_seen": epoch_changes,
        "received_but_not_acked": unacked_received,
        "connection_ids_changed": ids_changed,
        "goal": {
            f"p99_s<={GOAL_P99_S:g}": fo["p99"] is not None and fo["p99"] <= GOAL_P99_S,
            "lost==0": lost == 0,
            "dup==0": dup == 0,
        },
        "correctness": {
            "lost==0": lost == 0,
            "duplicated==0": dup == 0,
            "reordered==0": reordered == 0,
            "connection_ids_changed==0": ids_changed == 0,
        },
    }


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

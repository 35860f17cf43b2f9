"""Fan-out, Continuity against Socket.IO 4.8 (connection-state recovery on), same clients, same run.

    python bench/fanout_compare.py                       # N in 1,200,1000; paced and max rate
    python bench/fanout_compare.py --subscribers 200 --modes paced --targets continuity
    python bench/fanout_compare.py --subscribers 200 --targets continuity --profile /tmp/prof

For each workload (N subscribers x paced|max) it starts a fresh server (one ``python -m frontend
--dev`` process, or one ``node bench/peers/socketio/server.mjs`` process), N subscribers spread over
``--procs`` Node worker processes and one Node publisher (``bench/peers/socketio/client.mjs``: the
same load client for both servers, over a bare ``ws`` with JSON.parse per frame: raw Ably protocol
v3 JSON for Continuity, raw Engine.IO 4 / Socket.IO 5 framing for Socket.IO, so that neither
server is fed by a heavier client; ``--socketio-client official`` uses socket.io-client instead),
and runs the two servers back to back on the same workload so that background load hits both alike.

- paced: the publisher sends ``min(500, --paced-deliveries / N)`` msg/s (500 msg/s at N=200; the
  1000-subscriber run is paced at the same 100k deliveries/s).
- max: the publisher keeps ``--window`` (64) un-ACKed publishes in flight, as fast as ACKs come.

Every payload carries the publisher's send time; each subscriber records publish->deliver latency of
every message. deliveries/s = deliveries / (last delivery - first publish). Server RSS is the peak
(VmHWM) of the server process during the run. Prints one JSON object with every run and, per
workload, the ratios Continuity/Socket.IO of deliveries/s and of p99 latency (and whether the target
of issue 7 is met). ``--profile DIR`` also samples the frontend with ``py-spy record`` for each
Continuity run and puts the top functions (own and inclusive time) in the JSON.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness as H

TARGET_P99_MAX_RATE_MS = 500.0


def run_one(
    args: argparse.Namespace, target: str, n: int, mode: str, profile_dir: Path | None
) -> dict[str, Any]:
    """Start a fresh server for ``target``, measure one workload on it, stop it."""
    server: H.Frontend | H.SocketIOServer = (
        H.Frontend(H.tempdir("fanout-")) if target == "continuity" else H.SocketIOServer()
    )
    try:
        out = measure(
            args, target, server.url, server.pid, n, mode, profile_dir if target == "continuity" else None
        )
        out["server_peak_rss_mb"] = round(H.rss_kb(server.pid, "VmHWM") / 1024, 1)
        return out
    finally:
        server.stop()


def measure(
    args: argparse.Namespace,
    target: str,
    url: str,
    server_pid: int,
    n: int,
    mode: str,
    profile_dir: Path | None = None,
    channel: str = "bench:fanout",
) -> dict[str, Any]:
    """One fan-out workload against a running server at ``url`` (CPU and RSS read from ``server_pid``)."""
    rate = min(500.0, args.paced_deliveries / n) if mode == "paced" else 0.0
    spy: subprocess.Popen[bytes] | None = None
    try:
        workers = [
            H.NodeClient("sub", target, url, n=k, channel=channel, sioclient=args.socketio_client)
            for k in H.split(n, args.procs)
        ]
        for w in workers:
            w.wait("ready", 120)
        cpu0 = H.cpu_seconds(server_pid)
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine, beside the figure
        raw = None
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            raw = profile_dir / f"fanout-{n}-{mode}-{int(time.time())}.raw"
            spy = H.spawn(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(server_pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        pub = H.NodeClient(
            "pub",
            target,
            url,
            rate=rate,
            seconds=args.seconds,
            window=args.window,
            size=args.size,
            channel=channel,
            sioclient=args.socketio_client,
        )
        pub.wait("ready", 60)
        published = pub.wait("result", args.seconds + 60)
        cpu_publish = H.cpu_seconds(server_pid) - cpu0
        for w in workers:
            w.send(f"expect {published['published']}")
        results = []
        deadline = time.monotonic() + args.drain
        for w in workers:
            try:
                results.append(w.wait("result", max(1.0, deadline - time.monotonic())))
            except SystemExit:
                w.send("stop")
                results.append(w.wait("result", 30))
        if spy is not None:
            spy.wait(timeout=args.seconds + 30)
        lat = sorted(x for r in results for x in r["latencies"])
        received = sum(r["received"] for r in results)
        last = max((r["last_recv_ms"] for r in results if r["last_recv_ms"]), default=0.0)
        span_s = (last - published["publish_start_ms"]) / 1000 if last else float("nan")
        out: dict[str, Any] = {
            "target": target,
            "subscribers": n,
            "mode": mode,
            "rate": rate or "max",
            "published": published["published"],
            "publish_per_s": round(published["published"] / published["publish_seconds"], 1),
            "deliveries": received,
            "expected_deliveries": published["published"] * n,
            "deliveries_per_s": round(received / span_s, 1) if span_s > 0 else None,
            "latency_ms": H.summary_ms(lat) | {"n": sum(1 for _ in lat)},
            "gaps": sum(r["gaps"] for r in results),
            "duplicates": sum(r["dupes"] for r in results),
            "server_rss_mb": round(H.rss_kb(server_pid) / 1024, 1),
            "server_cpu_s": round(H.cpu_seconds(server_pid) - cpu0, 2),
            "server_cpu_per_publish_s": round(cpu_publish / max(published["publish_seconds"], 1e-9), 2),
            "span_s": round(span_s, 2),
            "loadavg_before": load,
        }
        if raw is not None and raw.exists():
            out["profile"] = {"raw": str(raw), **top_of_profile(raw, args.top)}
        return out
    finally:
        if spy is not None:
            H.stop(spy)
        H.stop_clients()


def top_of_profile(raw: Path, top: int) -> dict[str, Any]:
    """Top functions of a ``py-spy --format raw`` profile: own (leaf) and inclusive share of samples."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        total += n
        if frames:
            own[_short(frames[-1])] += n
        for f in {_short(f) for f in frames}:
            incl[f] += n
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    # Leave out the root frames (runpy, main, trio's run loop) that every stack shares.
    root = 0.9 * max(incl.values(), default=0)
    inner = [(f, c) for f, c in incl.most_common() if c < root]
    return {
        "samples": total,
        "top_own_pct": [[f, pct(c)] for f, c in own.most_common(top)],
        "top_inclusive_pct": [[f, pct(c)] for f, c in inner[:top]],
    }


def _short(frame: str) -> str:
    """``send_all (trio/_highlevel_socket.py:112)`` -> ``send_all (trio/_highlevel_socket.py)``."""
    name, _, loc = frame.partition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{H.ROOT}/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def median_runs(runs: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Per (target, N, mode), the run with the median deliveries/s (the only one without --repeat)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["target"], r["subscribers"], r["mode"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["deliveries_per_s"] or 0.0)[len(v) // 2] for k, v in groups.items()}


def per_cpu_s(run: dict[str, Any]) -> float | None:
    """Deliveries per server CPU-second of one run."""
    cpu = run.get("server_cpu_s") or 0.0
    return round(run["deliveries"] / cpu) if cpu > 0 else None


def issue16_target(n: int, mode: str, row: dict[str, Any]) -> bool | None:
    """Issue 16's target for this workload, if it sets one: N=1 max >= 1.0x Socket.IO's publishes/s;
    paced fan-out >= 1.0x its deliveries per CPU-second; max-rate p99 <= its p99 at N=200 and 1000."""
    if n == 1 and mode == "max":
        return bool(row["throughput_ratio"] is not None and row["throughput_ratio"] >= 1.0)
    if mode == "paced" and n > 1:
        return bool(row["cpu_efficiency_ratio"] is not None and row["cpu_efficiency_ratio"] >= 1.0)
    if mode == "max" and n in (200, 1000):
        return bool(row["p99_ratio"] is not None and row["p99_ratio"] <= 1.0)
    return None


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = median_runs(runs)
    rows = []
    for (target, n, mode), c in by.items():
        if target != "continuity" or ("socketio", n, mode) not in by:
            continue
        s = by[("socketio", n, mode)]
        tput = H.ratio(c["deliveries_per_s"], s["deliveries_per_s"])
        p99 = H.ratio(c["latency_ms"]["p99"], s["latency_ms"]["p99"])
        row: dict[str, Any] = {
            "subscribers": n,
            "mode": mode,
            "continuity_deliveries_per_s": c["deliveries_per_s"],
            "socketio_deliveries_per_s": s["deliveries_per_s"],
            "throughput_ratio": tput,
            "continuity_p99_ms": c["latency_ms"]["p99"],
            "socketio_p99_ms": s["latency_ms"]["p99"],
            "p99_ratio": p99,
            "loadavg_before": {"continuity": c.get("loadavg_before"), "socketio": s.get("loadavg_before")},
            # Issue 16: CPU beside throughput (on 2 cores the load clients share the machine).
            "continuity_deliveries_per_cpu_s": per_cpu_s(c),
            "socketio_deliveries_per_cpu_s": per_cpu_s(s),
            "cpu_efficiency_ratio": H.ratio(per_cpu_s(c), per_cpu_s(s)),
        }
        row["issue16_target_met"] = issue16_target(n, mode, row)
        if n == 200:
            if mode == "paced":
                row["target_met"] = bool(tput is not None and tput >= 1.0 and p99 is not None and p99 <= 1.0)
            else:
                row["target_met"] = bool(
                    tput is not None
                    and tput >= 1.0
                    and (c["latency_ms"]["p99"] or 1e9) <= TARGET_P99_MAX_RATE_MS
                )
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", default="1,200,1000", help="comma-separated N (default 1,200,1000)")
    p.add_argument("--modes", default="paced,max", help="paced and/or max (default both)")
    p.add_argument("--targets", default="continuity,socketio", help="continuity and/or socketio")
    p.add_argument("--seconds", type=float, default=5.0, help="publishing time per run (default 5)")
    p.add_argument(
        "--paced-deliveries",
        type=float,
        default=100_000,
        help="paced rate = min(500, this / N) msg/s (default 100000)",
    )
    p.add_argument("--window", type=int, default=64, help="un-ACKed publishes in flight (default 64)")
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    p.add_argument("--procs", type=int, default=2, help="subscriber worker processes (default 2)")
    p.add_argument("--drain", type=float, default=20.0, help="s to wait for the last deliveries (default 20)")
    p.add_argument(
        "--profile", metavar="DIR", help="py-spy the frontend in each Continuity run; raw stacks in DIR"
    )
    p.add_argument(
        "--socketio-client",
        choices=["raw", "official"],
        default="raw",
        help="Socket.IO load client: raw framing over ws (default) or socket.io-client",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per workload and server; ratios use the median (default 1)",
    )
    p.add_argument("--top", type=int, default=15, help="profile entries to report (default 15)")
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    runs = []
    workloads = [(int(n), m) for n in args.subscribers.split(",") for m in args.modes.split(",")]
    targets = args.targets.split(",")
    for i, (n, mode) in enumerate(workloads):
        for rep in range(args.repeat):
            for target in targets:
                H.progress(
                    f"fanout {i + 1}/{len(workloads)} (repeat {rep + 1}/{args.repeat}): {target} N={n} {mode}"
                )
                r = run_one(args, target, n, mode, Path(args.profile) if args.profile else None)
                r["repeat"] = rep
                H.progress(f"  {r['deliveries_per_s']} deliveries/s, p99 {r['latency_ms']['p99']} ms")
                runs.append(r)
    H.emit(
        {
            "benchmark": "fanout_compare",
            "machine": machine,
            "seconds": args.seconds,
            "comparison": compare(runs),
            "runs": runs,
            "client_side": "the same Node load client for both servers (bench/peers/socketio/client.mjs)",
        }
    )


if __name__ == "__main__":
    main()

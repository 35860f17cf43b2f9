"""Many channels: thousands of small channels, 4 members each, one publish per channel per second;
Continuity against Socket.IO 4.8 rooms (connection-state recovery on), same load clients, same run.

    python bench/many_channels.py                       # 5,000 x 4 (or the largest that fits) and 1,250 x 4
    python bench/many_channels.py --channels 1250 --seconds 10 --targets continuity

Issue 16's shape is 5,000 channels x 4 members over 20,000 connections. Each member is one
WebSocket connection subscribed to its channel; the first member of each channel also publishes on
it once per second (so every publish is delivered 4 times, the publisher's own echo included, as
``io.to(room).emit`` does for Socket.IO). The members are spread over ``--procs`` Node processes
(``bench/peers/socketio/many.mjs``), each holding a contiguous range of channels and connecting
from its own loopback source address (127.0.1.k), and each spreading its channels' publishes evenly
over the second.

One server process holds every connection, so the open-file limit caps the shape: the script raises
its soft RLIMIT_NOFILE to the hard limit (inherited by the servers and clients; the hard limit too
when permitted, as a deployment would) and, when ``channels x members`` plus a margin does not fit,
runs the largest channel count that does and says so (``clamped_by``). The default also runs a
scaled shape (``--also 1250``) that fits anywhere.

Per target: connect and attach every member, then publish for ``--seconds``; deliveries/s = every
delivery / (last delivery - first publish); p50/p99 publish->deliver latency (the publisher's and
the receivers' clocks are the same process's); server CPU-seconds from the first publish to the
last delivery, and per delivery; the load average before and after. Per shape, the ratios
Continuity/Socket.IO and whether issue 16's target is met (>= 1.0x Socket.IO's deliveries/s at a
p99 no worse; the load is paced, so both deliver the offered load and the throughput ratio is 1.0
within 1% when both keep up).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness as H
import many_shape as S
from fanout_compare import top_of_profile

MANY_JS = H.PEER / "many.mjs"


def raise_open_files() -> int | None:
    """Soft RLIMIT_NOFILE up to the hard limit (unlimited if permitted); the limit now (None: none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return None
    except (ValueError, OSError):
        pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None if hard == resource.RLIM_INFINITY else hard


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def profile_start(
    args: argparse.Namespace, pid: int, target: str, channels: int
) -> tuple[subprocess.Popen[bytes], Path] | None:
    """``py-spy record`` on the frontend for the publishing window (``--profile DIR``)."""
    if not args.profile or target != "continuity":
        return None
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"many-{channels}-{int(time.time())}.raw"
    cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration"]
    cmd += [str(args.seconds), "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(raw)]
    return H.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw


def profile_stop(
    spy: tuple[subprocess.Popen[bytes], Path] | None, args: argparse.Namespace
) -> dict[str, Any] | None:
    if spy is None:
        return None
    proc, raw = spy
    try:
        proc.wait(timeout=args.seconds + 30)
    except subprocess.TimeoutExpired:
        H.stop(proc)
    return {"raw": str(raw), **top_of_profile(raw, 15)} if raw.exists() else None


def client_error(e: SystemExit) -> str:
    """A load client's failure (harness raises SystemExit with a message); a signal's exit goes on."""
    if not isinstance(e.code, str):
        raise e
    return e.code


def run_target(args: argparse.Namespace, target: str, channels: int) -> dict[str, Any]:
    server: H.Frontend | H.SocketIOServer = (
        H.Frontend(H.tempdir("many-")) if target == "continuity" else H.SocketIOServer()
    )
    pid = server.pid
    try:
        rss0 = H.rss_kb(pid)
        clients = [
            H.NodeClient(
                "",
                target,
                server.url,
                script=MANY_JS,
                first=first,
                channels=count,
                members=args.members,
                concurrency=args.concurrency,
                size=args.size,
                **{"local-address": f"127.0.1.{k + 1}"},
            )
            for k, (first, count) in enumerate(S.plan(channels, args.procs))
        ]
        readies = [c.wait("ready", 900) for c in clients]
        connected = sum(r["connected"] for r in readies)
        connect_s = max(r["seconds"] for r in readies)
        H.progress(f"  {target}: {connected} connections in {connect_s:.1f} s; settling")
        time.sleep(args.settle)
        cpu_idle0, t_idle0 = H.cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle_cpu_per_s = (H.cpu_seconds(pid) - cpu_idle0) / (time.monotonic() - t_idle0)
        rss_ready = H.rss_kb(pid)
        load_before = load()
        cpu0 = H.cpu_seconds(pid)
        spy = profile_start(args, pid, target, channels)
        for c in clients:
            c.send(f"go {args.seconds}")
        errors: list[str] = []
        for c in clients:
            try:
                c.wait("published", args.seconds + 120)
            except SystemExit as e:
                errors.append(client_error(e))
        for c in clients:
            c.send(f"expect {args.seconds}")
        results = []
        deadline = time.monotonic() + args.drain
        for c in clients:
            try:
                results.append(c.wait("result", max(1.0, deadline - time.monotonic())))
            except SystemExit as e:
                client_error(e)
                c.send("stop")
                try:
                    results.append(c.wait("result", 60))
                except SystemExit as e:  # counted as delivering nothing; named in the JSON
                    errors.append(client_error(e))
        cpu = H.cpu_seconds(pid) - cpu0
        profile = profile_stop(spy, args)
        m = S.merge(results)
        lat = m.pop("latencies")
        return {
            "target": target,
            "channels": channels,
            "members": args.members,
            "connections": connected,
            "connect_failed": sum(r["failed"] for r in readies),
            "connect_s": round(connect_s, 1),
            **m,
            "expected_deliveries": channels * args.members * args.seconds,
            "latency_ms": H.summary_ms(lat),
            "server_cpu_s": round(cpu, 2),
            "server_cpu_per_delivery_us": S.per_delivery_us(cpu, m["deliveries"]),
            "server_idle_cpu_per_s": round(idle_cpu_per_s, 3),
            "server_rss_mb": round(rss_ready / 1024, 1),
            "server_rss_per_connection_bytes": round((rss_ready - rss0) * 1024 / max(connected, 1)),
            "loadavg_before": load_before,
            "loadavg_after": load(),
            "load_client_errors": errors,
        } | ({"profile": profile} if profile else {})
    finally:
        H.stop_clients()
        server.stop()


def compare(c: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    tput = H.ratio(c["deliveries_per_s"], s["deliveries_per_s"])
    p99 = H.ratio(c["latency_ms"]["p99"], s["latency_ms"]["p99"])
    complete = all(r["deliveries"] == r["expected_deliveries"] and not r["gaps"] for r in (c, s))
    return {
        "channels": c["channels"],
        "connections": [c["connections"], s["connections"]],
        "continuity_deliveries_per_s": c["deliveries_per_s"],
        "socketio_deliveries_per_s": s["deliveries_per_s"],
        "throughput_ratio": tput,
        "continuity_p50_ms": c["latency_ms"]["p50"],
        "socketio_p50_ms": s["latency_ms"]["p50"],
        "continuity_p99_ms": c["latency_ms"]["p99"],
        "socketio_p99_ms": s["latency_ms"]["p99"],
        "p99_ratio": p99,
        "continuity_cpu_per_delivery_us": c["server_cpu_per_delivery_us"],
        "socketio_cpu_per_delivery_us": s["server_cpu_per_delivery_us"],
        "cpu_per_delivery_ratio": H.ratio(c["server_cpu_per_delivery_us"], s["server_cpu_per_delivery_us"]),
        "continuity_idle_cpu_per_s": c["server_idle_cpu_per_s"],
        "socketio_idle_cpu_per_s": s["server_idle_cpu_per_s"],
        "loadavg_before": {"continuity": c["loadavg_before"], "socketio": s["loadavg_before"]},
        "every_message_delivered": complete,
        "connections_cut": [c["cut"], s["cut"]],
        "target_met": bool(complete and tput is not None and tput >= 0.99 and p99 is not None and p99 <= 1.0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=5000, help="channels of the main shape (default 5000)")
    p.add_argument("--also", default="1250", help="comma-separated channel counts also run ('' for none)")
    p.add_argument("--members", type=int, default=4, help="connections per channel (default 4)")
    p.add_argument("--seconds", type=int, default=15, help="publishing time per run (default 15)")
    p.add_argument("--targets", default="continuity,socketio", help="continuity and/or socketio")
    p.add_argument("--procs", type=int, default=8, help="load-client processes (default 8)")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight per process")
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    p.add_argument("--settle", type=float, default=2.0, help="s to wait after connecting (default 2)")
    p.add_argument("--idle", type=float, default=3.0, help="s of idle CPU measured before publishing")
    p.add_argument("--drain", type=float, default=30.0, help="s to wait for the last deliveries")
    p.add_argument(
        "--profile", metavar="DIR", help="py-spy the frontend while it publishes; raw stacks in DIR"
    )
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    fd_limit = raise_open_files()
    requested = [args.channels, *(int(x) for x in args.also.split(",") if x.strip())]
    shapes, runs, rows = [], [], []
    for want in requested:
        got = S.fit_channels(want, args.members, fd_limit)
        shape = {"requested_channels": want, "channels": got, "members": args.members}
        if got < want:
            shape["clamped_by"] = f"open-file limit {fd_limit} per process, less {S.FD_MARGIN} for the server"
        shapes.append(shape)
        by: dict[str, dict[str, Any]] = {}
        for target in args.targets.split(","):
            H.progress(f"many channels: {target}, {got} channels x {args.members} (asked {want})")
            r = run_target(args, target, got)
            H.progress(
                f"  {r['deliveries_per_s']} deliveries/s, p99 {r['latency_ms']['p99']} ms,"
                f" {r['server_cpu_per_delivery_us']} us CPU/delivery, load {r['loadavg_before']}"
            )
            by[target] = r
            runs.append(r)
        if "continuity" in by and "socketio" in by:
            rows.append(shape | compare(by["continuity"], by["socketio"]))
    H.emit(
        {
            "benchmark": "many_channels",
            "machine": machine,
            "open_file_limit": fd_limit,
            "seconds": args.seconds,
            "shapes": shapes,
            "comparison": rows,
            "runs": runs,
            "client_side": f"{args.procs} Node processes of {Path(MANY_JS).name}, the same for both servers",
        }
    )


if __name__ == "__main__":
    main()

"""Fan-out benchmark: one frontend process, N subscribers (client SDK) in separate processes.

    python bench/fanout.py --subscribers 200 --rate 500 --seconds 10

Starts ``python -m frontend --dev`` on a free port, spreads the subscribers over
``--procs`` worker processes, then publishes ``rate`` messages/s for
``seconds`` from a publisher process. Every message carries its send time;
each subscriber records publish->deliver latency. Prints one JSON object:
deliveries/s, latency p50/p99/max (ms), lost/duplicated counts and the
server's peak RSS. ``--rate 0`` publishes as fast as ACKs allow (max rate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import continuity as client  # noqa: E402
from bench.harness import cpu_seconds, rss_kb  # noqa: E402

CHANNEL = "bench:fanout"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


async def worker(url: str, n: int, fmt: str, expect: int, ready_file: str, run_for: float) -> None:
    latencies: list[float] = []
    counts = [0] * n
    dupes = 0
    gaps = 0

    async def one(i: int, ready: trio.Event) -> None:
        nonlocal dupes, gaps
        async with client.connect(url, key="bench.key:secret", format=fmt) as conn:  # type: ignore[arg-type]
            ch = conn.channel(CHANNEL)
            async with ch.subscribe() as sub:
                ready.set()
                last = None
                async for msg in sub:
                    now = time.time()
                    seq = int((msg.serial or "x:0").rpartition(":")[2])
                    if last is not None and seq != last + 1:
                        if seq <= last:
                            dupes += 1
                        else:
                            gaps += 1
                    last = seq
                    if isinstance(msg.data, dict):
                        latencies.append((now - msg.data["t"]) * 1000)
                    counts[i] += 1
                    if counts[i] >= expect:
                        return

    with trio.move_on_after(run_for):
        async with trio.open_nursery() as nursery:
            events = []
            for i in range(n):
                ev = trio.Event()
                events.append(ev)
                nursery.start_soon(one, i, ev)
            for ev in events:
                await ev.wait()
            await trio.Path(ready_file).write_text("ready")
    latencies.sort()
    print(json.dumps({"received": sum(counts), "complete": sum(c >= expect for c in counts), "dupes": dupes,
                      "gaps": gaps, "latencies": latencies[:: max(1, len(latencies) // 20000)]}))


async def publisher(url: str, rate: float, seconds: float) -> dict[str, float]:
    sent = 0
    start = time.monotonic()
    async with client.connect(url, key="bench.key:secret", format="msgpack", echo=False) as conn:
        ch = conn.channel(CHANNEL)
        await ch.attach()
        total = int(rate * seconds) if rate > 0 else None
        deadline = start + seconds
        async with trio.open_nursery() as nursery:
            # Keep a window of un-ACKed publishes in flight, as a real publisher does.
            window = trio.Semaphore(64)

            async def pub(i: int) -> None:
                await ch.publish("tick", {"i": i, "t": time.time()})
                window.release()

            while (total is None and time.monotonic() < deadline) or (total is not None and sent < total):
                if rate > 0:
                    target = start + sent / rate
                    now = time.monotonic()
                    if target > now:
                        await trio.sleep(target - now)
                await window.acquire()
                nursery.start_soon(pub, sent)
                sent += 1
    return {"published": sent, "publish_seconds": time.monotonic() - start}


def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="fanout-"))
    port_file = tmp / "port"
    cfg = tmp / "frontend.toml"
    cfg.write_text(f'dev = true\nport = 0\nport_file = "{port_file}"\noutbox_limit = 100000\n')
    cmd = [sys.executable, "-m", "frontend", "--config", str(cfg), "--log-level", "warning"]
    server = subprocess.Popen(cmd, cwd=ROOT, stderr=open(tmp / "server.log", "wb"))
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("frontend did not start; see " + str(tmp / "server.log"))
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{int(port_file.read_text())}"
        expect = int(args.rate * args.seconds) if args.rate > 0 else 0
        per = [args.subscribers // args.procs + (1 if i < args.subscribers % args.procs else 0)
               for i in range(args.procs)]
        workers = []
        for i, n in enumerate(per):
            ready = tmp / f"ready{i}"
            fmt = args.format if args.format != "mixed" else ("json", "msgpack")[i % 2]
            workers.append((ready, subprocess.Popen(
                [sys.executable, __file__, "worker", url, str(n), fmt, str(expect or 10**12), str(ready),
                 str(args.seconds + 30)], stdout=subprocess.PIPE, cwd=ROOT)))
        deadline = time.monotonic() + 60
        while not all(r.exists() for r, _ in workers):
            if time.monotonic() > deadline:
                raise SystemExit("subscribers did not attach within 60 s")
            time.sleep(0.05)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(server.pid)
        pub = trio.run(publisher, url, args.rate, args.seconds)
        if args.rate <= 0:
            for _, p in workers:
                p.terminate()
        results = [json.loads(p.communicate(timeout=args.seconds + 60)[0] or b"{}") for _, p in workers]
        elapsed = time.monotonic() - t0
        lat = sorted(x for r in results for x in r.get("latencies", []))
        received = sum(r.get("received", 0) for r in results)
        return {
            "benchmark": "fanout",
            "subscribers": args.subscribers,
            "rate": args.rate or "max",
            "format": args.format,
            **pub,
            "deliveries": received,
            "expected_deliveries": pub["published"] * args.subscribers,
            "deliveries_per_s": round(received / elapsed, 1),
            "latency_ms": {"p50": round(percentile(lat, 0.5), 2), "p99": round(percentile(lat, 0.99), 2),
                           "max": round(lat[-1], 2) if lat else None},
            "gaps": sum(r.get("gaps", 0) for r in results),
            "duplicates": sum(r.get("dupes", 0) for r in results),
            "server_peak_rss_mb": round(rss_kb(server.pid, "VmHWM") / 1024, 1),
            "server_cpu_s": round(cpu_seconds(server.pid) - cpu0, 2),
            "elapsed_s": round(elapsed, 2),
            "cpus": os.cpu_count(),
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        url, n, fmt, expect, ready, timeout = sys.argv[2:8]
        trio.run(worker, url, int(n), fmt, int(expect), ready, float(timeout))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--procs", type=int, default=4, help="subscriber worker processes")
    p.add_argument("--rate", type=float, default=500, help="messages/s; 0 = as fast as ACKs allow")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--format", choices=["json", "msgpack", "mixed"], default="msgpack")
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()

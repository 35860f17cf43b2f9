"""One machine, all cores: fan-out throughput through one router with 1 and then 2 frontends.

    python bench/scaling.py                              # 200 subscribers, max rate and paced
    python bench/scaling.py --frontends 1,2 --modes max --seconds 5

For each frontend count it starts a fresh cluster on 127.0.0.1 (dev mode, zone a, gossip on free
ports): that many frontends and one router. Every client connects through the router, which spreads
the connections over the frontends, so with 2 frontends about half the subscribers sit on the
channel's home and the rest on a frontend that gets the entries over its peer link. The workload is
bench/fanout_compare.py's (N Node subscribers, one Node publisher, raw Ably protocol over ``ws``).
Reports deliveries/s and latency per frontend count, the CPU-seconds of every frontend and of the
router, deliveries per CPU-second of the whole cluster, the load average beside each run, and the
ratio of 2 frontends to 1. On a 2-core machine shared with the load clients the ratio says how much a
second frontend process buys on the same cores (deploy/README.md: how many frontends per core).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import harness as H
from fanout_compare import measure

sys.path.insert(0, str(H.ROOT))
from tests.support.cluster import free_port

SECRET = "bench-cluster-secret-0123456789"


class Cluster:
    """``frontends`` frontends and one router, all in zone a, dev mode (any key)."""

    def __init__(self, workdir: Path, frontends: int) -> None:
        rt_port, rt_gossip = free_port(), free_port()
        ports = [(free_port(), free_port(), free_port()) for _ in range(frontends)]
        seeds = f'["127.0.0.1:{ports[0][1]}"]'
        common = f'dev = true\nhost = "127.0.0.1"\ncluster_secret = "{SECRET}"\ngossip_profile = "local"\n'
        configs = []
        self.names = [f"fe-a{i + 1}" for i in range(frontends)]
        for name, (port, gossip, peer) in zip(self.names, ports, strict=True):
            cfg = workdir / f"{name}.toml"
            cfg.write_text(
                common + f'node_id = "{name}"\nzone = "a"\nport = {port}\n'
                f'gossip_bind = "127.0.0.1:{gossip}"\nseeds = {seeds}\npeer_host = "127.0.0.1"\n'
                f"peer_port = {peer}\noutbox_limit = 100000\n"
            )
            configs.append((name, "frontend", cfg))
        rt_cfg = workdir / "rt1.toml"
        rt_cfg.write_text(
            common + f'node_id = "rt1"\nzone = "a"\nport = {rt_port}\n'
            f'gossip_bind = "127.0.0.1:{rt_gossip}"\nseeds = {seeds}\n'
        )
        configs.append(("rt1", "router", rt_cfg))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, module, cfg in configs:
            with open(workdir / f"{name}.log", "wb") as log:
                self.procs[name] = H.spawn(
                    [sys.executable, "-m", module, "--config", str(cfg), "--log-level", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.router_url = f"ws://127.0.0.1:{rt_port}"
        self._wait_converged(rt_port, workdir)

    def _wait_converged(self, rt_port: int, workdir: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for p in self.procs.values():
                if p.poll() is not None:
                    raise SystemExit(f"a daemon exited; see {workdir}/*.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rt_port}/cluster", timeout=2) as r:
                    text = json.dumps(json.loads(r.read()))
                if all(n in text for n in self.names) and text.count('"alive"') >= len(self.names):
                    time.sleep(2)  # let every frontend see every other before homes are placed
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the router did not see every frontend within 60 s; see {workdir}/*.log")

    def cpu(self) -> dict[str, float]:
        return {name: H.cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            H.stop(p)


def run(args: argparse.Namespace, frontends: int, mode: str) -> dict[str, Any]:
    cluster = Cluster(H.tempdir("scaling-"), frontends)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
        cpu0 = cluster.cpu()
        # The CPU and RSS measure() reports are the first frontend's; the cluster's are below.
        r = measure(
            args, "continuity", cluster.router_url, cluster.procs["fe-a1"].pid, args.subscribers, mode
        )
        cpu = {k: round(v - cpu0[k], 2) for k, v in cluster.cpu().items()}
        total = sum(cpu.values())
        return {
            "frontends": frontends,
            "mode": mode,
            "subscribers": args.subscribers,
            "deliveries_per_s": r["deliveries_per_s"],
            "publish_per_s": r["publish_per_s"],
            "latency_ms": r["latency_ms"],
            "deliveries": r["deliveries"],
            "expected_deliveries": r["expected_deliveries"],
            "gaps": r["gaps"],
            "duplicates": r["duplicates"],
            "cpu_s": cpu,
            "cluster_cpu_s": round(total, 2),
            "deliveries_per_cluster_cpu_s": round(r["deliveries"] / total) if total else None,
            "loadavg_before": load,
        }
    finally:
        cluster.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frontends", default="1,2", help="comma-separated frontend counts (default 1,2)")
    p.add_argument("--subscribers", type=int, default=200, help="subscribers (default 200)")
    p.add_argument("--modes", default="max,paced", help="max and/or paced (default both)")
    p.add_argument("--seconds", type=float, default=5.0, help="publishing time per run (default 5)")
    p.add_argument("--paced-deliveries", type=float, default=100_000, help="as in fanout_compare.py")
    p.add_argument("--window", type=int, default=64, help="un-ACKed publishes in flight (default 64)")
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    p.add_argument("--procs", type=int, default=2, help="subscriber worker processes (default 2)")
    p.add_argument("--drain", type=float, default=20.0, help="s to wait for the last deliveries")
    p.set_defaults(socketio_client="raw")
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    counts = [int(x) for x in args.frontends.split(",")]
    runs, rows = [], []
    for mode in args.modes.split(","):
        by = {}
        for k in counts:
            H.progress(f"scaling: {k} frontend(s) behind one router, N={args.subscribers} {mode}")
            r = run(args, k, mode)
            H.progress(
                f"  {r['deliveries_per_s']} deliveries/s, p99 {r['latency_ms']['p99']} ms,"
                f" cluster CPU {r['cluster_cpu_s']} s, load {r['loadavg_before']}"
            )
            by[k] = r
            runs.append(r)
        if 1 in by and len(by) > 1:
            top = max(by)
            rows.append(
                {
                    "mode": mode,
                    "frontends": [1, top],
                    "throughput_ratio": H.ratio(by[top]["deliveries_per_s"], by[1]["deliveries_per_s"]),
                    "p99_ratio": H.ratio(by[top]["latency_ms"]["p99"], by[1]["latency_ms"]["p99"]),
                    "deliveries_per_cpu_s_ratio": H.ratio(
                        by[top]["deliveries_per_cluster_cpu_s"], by[1]["deliveries_per_cluster_cpu_s"]
                    ),
                }
            )
    H.emit({"benchmark": "scaling", "machine": machine, "comparison": rows, "runs": runs})


if __name__ == "__main__":
    main()

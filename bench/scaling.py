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
import os
from typing import Any

import harness as H
from fanout_compare import measure


def run(args: argparse.Namespace, frontends: int, mode: str) -> dict[str, Any]:
    cluster = H.OneZoneCluster(H.tempdir("scaling-"), frontends)
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

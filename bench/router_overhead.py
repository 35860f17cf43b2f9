"""Router overhead: fan-out throughput and latency through a router against direct to the frontend.

    python bench/router_overhead.py                      # 200 subscribers, paced and max rate
    python bench/router_overhead.py --subscribers 200 --modes paced --seconds 10

Starts a minimal cluster on 127.0.0.1: one frontend and one router (``python -m router``), found
by gossip. Each workload (the fan-out of ``bench/fanout_compare.py``: N Node subscribers and one
Node publisher, raw Ably protocol over ``ws``) runs twice on the same frontend, back to back:
every client connected straight to the frontend, then every client connected through the router
(which pipes the WebSocket bytes). Reports deliveries/s and publish->deliver latency for both, the
ratios router/direct, and the router's CPU time and RSS.
"""

from __future__ import annotations

import argparse
from typing import Any

import harness as H
from fanout_compare import measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=200, help="subscribers (default 200)")
    p.add_argument("--modes", default="paced,max", help="paced and/or max (default both)")
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
    workdir = H.tempdir("router-")
    cluster = H.OneZoneCluster(workdir, frontends=1)
    fe_pid, rt_pid = cluster.procs["fe-a1"].pid, cluster.procs["rt1"].pid
    rows: list[dict[str, Any]] = []
    try:
        for k, mode in enumerate(args.modes.split(",")):
            res = {}
            for via, url in (("direct", cluster.frontend_urls[0]), ("router", cluster.router_url)):
                H.progress(f"router overhead: {mode}, {via}")
                rt_cpu0 = H.cpu_seconds(rt_pid)
                r = measure(
                    args, "continuity", url, fe_pid, args.subscribers, mode, channel=f"bench:rt:{k}:{via}"
                )
                r["router_cpu_s"] = round(H.cpu_seconds(rt_pid) - rt_cpu0, 2)
                r["router_rss_mb"] = round(H.rss_kb(rt_pid) / 1024, 1)
                H.progress(f"  {r['deliveries_per_s']} deliveries/s, p99 {r['latency_ms']['p99']} ms")
                res[via] = r
            d, r = res["direct"], res["router"]
            rows.append(
                {
                    "mode": mode,
                    "subscribers": args.subscribers,
                    "direct": d,
                    "router": r,
                    "throughput_ratio_router_over_direct": H.ratio(
                        r["deliveries_per_s"], d["deliveries_per_s"]
                    ),
                    "p50_ratio_router_over_direct": H.ratio(r["latency_ms"]["p50"], d["latency_ms"]["p50"]),
                    "p99_ratio_router_over_direct": H.ratio(r["latency_ms"]["p99"], d["latency_ms"]["p99"]),
                }
            )
    finally:
        cluster.stop()
    H.emit({"benchmark": "router_overhead", "machine": machine, "runs": rows})


if __name__ == "__main__":
    main()

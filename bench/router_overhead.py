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
import json
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


class MiniCluster:
    """One frontend and one router, dev mode (any key), gossip on free ports."""

    def __init__(self, workdir: Path) -> None:
        fe_port, rt_port, fe_gossip, rt_gossip, peer = (free_port() for _ in range(5))
        seeds = f'["127.0.0.1:{fe_gossip}"]'
        common = f'dev = true\nhost = "127.0.0.1"\ncluster_secret = "{SECRET}"\ngossip_profile = "local"\n'
        fe_cfg = workdir / "fe.toml"
        fe_cfg.write_text(
            common
            + f'node_id = "fe-a1"\nzone = "a"\nport = {fe_port}\ngossip_bind = "127.0.0.1:{fe_gossip}"\n'
            f'seeds = {seeds}\npeer_host = "127.0.0.1"\npeer_port = {peer}\noutbox_limit = 100000\n'
        )
        rt_cfg = workdir / "rt.toml"
        rt_cfg.write_text(
            common + f'node_id = "rt1"\nzone = "a"\nport = {rt_port}\ngossip_bind = "127.0.0.1:{rt_gossip}"\n'
            f"seeds = {seeds}\n"
        )
        self.procs = {}
        for name, module, cfg in (("fe", "frontend", fe_cfg), ("rt", "router", rt_cfg)):
            with open(workdir / f"{name}.log", "wb") as log:
                self.procs[name] = H.spawn(
                    [sys.executable, "-m", module, "--config", str(cfg), "--log-level", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.frontend_url = f"ws://127.0.0.1:{fe_port}"
        self.router_url = f"ws://127.0.0.1:{rt_port}"
        self._wait_converged(rt_port, workdir)

    def _wait_converged(self, rt_port: int, workdir: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for p in self.procs.values():
                if p.poll() is not None:
                    raise SystemExit(f"a daemon exited; see {workdir}/*.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rt_port}/cluster", timeout=2) as r:
                    body = json.loads(r.read())
                if "fe-a1" in json.dumps(body) and '"alive"' in json.dumps(body):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the router did not see the frontend within 30 s; see {workdir}/*.log")

    def stop(self) -> None:
        for p in self.procs.values():
            H.stop(p)


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
    cluster = MiniCluster(workdir)
    fe_pid, rt_pid = cluster.procs["fe"].pid, cluster.procs["rt"].pid
    rows: list[dict[str, Any]] = []
    try:
        for k, mode in enumerate(args.modes.split(",")):
            res = {}
            for via, url in (("direct", cluster.frontend_url), ("router", cluster.router_url)):
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

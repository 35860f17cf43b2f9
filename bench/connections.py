"""Connections: how many concurrent idle connections one frontend holds within ``--rss-limit-mb``
(2 GiB), RSS per connection, the extrapolation to the limit, and the connect rate.

    python bench/connections.py                  # up to 50,000, steps of 5,000
    python bench/connections.py --max 5000 --step 1000

Starts one dev frontend and adds idle Node WebSocket connections (``client.mjs idle``: CONNECT,
CONNECTED, nothing attached) in steps of ``--step``, each step from a new client process with
``--concurrency`` handshakes in flight. After each step it records the frontend's RSS. It stops at
``--max``, at the open-file limit of the frontend (less a margin), or when RSS passes the limit.

As a deployment would, it first raises its open-file limit (RLIMIT_NOFILE, inherited by the
frontend and the clients) to ``--max`` plus a margin: the soft limit up to the hard one, and the
hard one too when it may (root). Each client process connects from its own loopback source address
(127.0.1.k): one address has only ~28k ephemeral ports towards the one server port.

connect rate = connections completed / seconds, per step (CONNECTED received by the client);
RSS/connection = (RSS at the end - RSS before the first connection) / connections. The
extrapolation assumes that slope holds up to the limit.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import harness as H

FD_MARGIN = 500  # descriptors the frontend needs besides its client sockets


def raise_open_file_limit(want: int) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (the hard limit too, if permitted); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            H.progress(f"open-file hard limit {hard} (raising it needs privileges)")
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max", type=int, default=50_000, help="cap on the attempt (default 50000)")
    p.add_argument("--step", type=int, default=5_000, help="connections per step/process (default 5000)")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight (default 100)")
    p.add_argument("--rss-limit-mb", type=float, default=2048, help="RSS budget (default 2048)")
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    soft = raise_open_file_limit(args.max + FD_MARGIN)
    cap = min(args.max, soft - FD_MARGIN) if soft != resource.RLIM_INFINITY else args.max
    fe = H.Frontend(H.tempdir("connections-"))
    try:
        time.sleep(0.5)
        rss0 = H.rss_kb(fe.pid)
        total = 0
        steps: list[dict[str, Any]] = []
        workers = []
        stopped_by = "max"
        while total < cap:
            n = min(args.step, cap - total)
            H.progress(f"connections: {total} -> {total + n} (RSS {H.rss_kb(fe.pid) // 1024} MiB)")
            source = f"127.0.1.{len(workers) + 1}"
            w = H.NodeClient(
                "idle", "continuity", fe.url, n=n, concurrency=args.concurrency, **{"local-address": source}
            )
            workers.append(w)
            ready = w.wait("ready", 600)
            total += ready["connected"]
            rss = H.rss_kb(fe.pid)
            steps.append(
                {
                    "connections": total,
                    "rss_mb": round(rss / 1024, 1),
                    "connect_per_s": round(ready["per_s"], 1),
                    "failed": ready["failed"],
                }
            )
            if ready["failed"]:
                stopped_by = "connect failures"
                break
            if rss / 1024 >= args.rss_limit_mb:
                stopped_by = "rss limit"
                break
        if total >= cap and cap < args.max:
            stopped_by = f"open-file limit ({soft})"
        rss_end = H.rss_kb(fe.pid)
        per_conn = (rss_end - rss0) * 1024 / max(total, 1)
        limit_bytes = args.rss_limit_mb * 1024 * 1024
        rates = [s["connect_per_s"] for s in steps]
        H.emit(
            {
                "benchmark": "connections",
                "machine": machine,
                "connections_held": total,
                "stopped_by": stopped_by,
                "rss_start_mb": round(rss0 / 1024, 1),
                "rss_end_mb": round(rss_end / 1024, 1),
                "rss_per_connection_bytes": round(per_conn),
                "extrapolated_connections_within_limit": int((limit_bytes - rss0 * 1024) / per_conn)
                if per_conn
                else None,
                "rss_limit_mb": args.rss_limit_mb,
                "connect_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
                "connect_concurrency": args.concurrency,
                "steps": steps,
            }
        )
        for w in workers:
            w.send("stop")
    finally:
        fe.stop()


if __name__ == "__main__":
    main()

"""Memory per detached connection with ``--channels`` attached channels, and its slope against
messages published while the connections are away (invariant 6 of the design: it must be ~0).

    python bench/detached_memory.py                       # 2000 connections x 10 channels
    python bench/detached_memory.py --connections 5000 --messages 40000

Starts one dev frontend, opens ``--connections`` Node clients (``client.mjs idle``) that each
attach ``--channels`` channels, then cuts every transport without a close handshake, so each
connection becomes detached (state kept for connectionStateTtl). It then publishes ``--messages``
messages round-robin over those channels in ``--steps`` steps, and after each step reads the
frontend's own account (``continuity_detached_state_bytes`` in /metrics) and its RSS.

Reports: bytes per detached connection (the frontend's account, and RSS growth / connections),
RSS per attached live connection, and the least-squares slope of detached bytes per connection
against messages published (bytes/connection per message; ~0 means cursors, not messages). RSS
also grows by the channel log holding the messages once (``log_bytes_per_message`` is that RSS
slope over messages, for every connection together).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import harness as H

DETACHED = "continuity_connections_detached"
DETACHED_BYTES = "continuity_detached_state_bytes"


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=2000, help="detached connections (default 2000)")
    p.add_argument("--channels", type=int, default=10, help="channels attached by each (default 10)")
    p.add_argument("--messages", type=int, default=20_000, help="published while detached (default 20000)")
    p.add_argument("--steps", type=int, default=4, help="measurement points (default 4)")
    p.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    fe = H.Frontend(H.tempdir("detached-"), extra="channel_log_max_messages = 100000")
    try:
        channels = ",".join(f"bench:idle:{c}" for c in range(args.channels))
        warm = H.NodeClient(
            "pub", "continuity", fe.url, count=args.channels * 10, rate=0, seconds=0, channel=channels
        )
        warm.wait("result", 60)
        time.sleep(0.5)
        rss0 = H.rss_kb(fe.pid)
        H.progress(f"opening {args.connections} connections x {args.channels} channels")
        workers = [
            H.NodeClient("idle", "continuity", fe.url, n=k, channels=args.channels, concurrency=100)
            for k in H.split(args.connections, args.procs)
        ]
        ready = [w.wait("ready", 300) for w in workers]
        time.sleep(0.5)
        rss_live = H.rss_kb(fe.pid)
        for w in workers:
            w.send("drop")
        for w in workers:
            w.wait("dropped", 30)
        deadline = time.monotonic() + 60
        while fe.metrics().get(DETACHED, 0) < args.connections and time.monotonic() < deadline:
            time.sleep(0.2)
        m = fe.metrics()
        detached = int(m.get(DETACHED, 0))
        points: list[dict[str, Any]] = [
            {"messages": 0, "detached_bytes": m.get(DETACHED_BYTES, 0.0), "rss_kb": H.rss_kb(fe.pid)}
        ]
        published = 0
        per_step = args.messages // args.steps
        for step in range(args.steps):
            H.progress(f"publishing while detached: step {step + 1}/{args.steps}")
            pub = H.NodeClient(
                "pub", "continuity", fe.url, count=per_step, rate=0, seconds=0, channel=channels
            )
            published += pub.wait("result", 300)["acked"]
            m = fe.metrics()
            points.append(
                {
                    "messages": published,
                    "detached_bytes": m.get(DETACHED_BYTES, 0.0),
                    "rss_kb": H.rss_kb(fe.pid),
                }
            )
        n = max(detached, 1)
        xs = [float(pt["messages"]) for pt in points]
        per_conn = [pt["detached_bytes"] / n for pt in points]
        H.emit(
            {
                "benchmark": "detached_memory",
                "machine": machine,
                "connections": args.connections,
                "detached": detached,
                "channels_per_connection": args.channels,
                "connect_per_s": round(
                    sum(r["connected"] for r in ready) / max(r["seconds"] for r in ready), 1
                ),
                "rss_per_live_attached_connection_bytes": round((rss_live - rss0) * 1024 / args.connections),
                "detached_state_bytes_per_connection": round(per_conn[0], 1),
                "rss_after_detach_per_connection_bytes": round(
                    (points[0]["rss_kb"] - rss0) * 1024 / args.connections
                ),
                "messages_published_while_detached": published,
                "slope_bytes_per_connection_per_message": round(slope(xs, per_conn), 6),
                "detached_bytes_per_connection_first_last": [round(per_conn[0], 1), round(per_conn[-1], 1)],
                "log_bytes_per_message_rss": round(slope(xs, [pt["rss_kb"] * 1024.0 for pt in points]), 1),
                "points": points,
            }
        )
    finally:
        fe.stop()


if __name__ == "__main__":
    main()

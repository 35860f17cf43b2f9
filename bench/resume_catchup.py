"""Resume catch-up: time from CONNECTED to caught up after ``--away`` s away at ``--rate`` msg/s.

    python bench/resume_catchup.py                      # 50 subscribers x 2 rounds, 3 s away, 200 msg/s
    python bench/resume_catchup.py --targets continuity --subscribers 100 --rounds 1

One server (a dev ``python -m frontend``, or the Socket.IO 4.8 peer with connection-state
recovery), one Node publisher at ``--rate`` msg/s throughout, and ``--subscribers`` Node
subscribers (``bench/peers/socketio/client.mjs resume``) that each, ``--rounds`` times at a random
moment, cut their transport without a close handshake, stay away ``--away`` s and come back:
Continuity with ``resume=<connectionKey>`` and an ATTACH from the last channelSerial; Socket.IO
by its own reconnection (delay = ``--away``) with connection-state recovery.

catch-up = (arrival of the last message published before CONNECTED) - (CONNECTED), taken when
the first message published after CONNECTED arrives (0 when nothing was missing). "CONNECTED" is
the CONNECTED ProtocolMessage for Continuity and the ``connect`` event for Socket.IO. Also
reports the reconnect time beyond ``--away``, resumes that lost their id or continuity, and gaps
and duplicates over the whole run. Prints one JSON object, with Continuity/Socket.IO ratios.
"""

from __future__ import annotations

import argparse
from typing import Any

import harness as H


def run_one(args: argparse.Namespace, target: str) -> dict[str, Any]:
    server: H.Frontend | H.SocketIOServer = (
        H.Frontend(H.tempdir("resume-")) if target == "continuity" else H.SocketIOServer()
    )
    try:
        workers = [
            H.NodeClient(
                "resume",
                target,
                server.url,
                n=k,
                away=args.away,
                rounds=args.rounds,
                spread=args.spread,
                channel="bench:resume",
            )
            for k in H.split(args.subscribers, args.procs)
        ]
        for w in workers:
            w.wait("ready", 120)
        pub = H.NodeClient("pub", target, server.url, rate=args.rate, seconds=0, channel="bench:resume")
        pub.wait("ready", 60)
        budget = 1 + args.rounds * (args.spread + args.away + 35)
        results = [w.wait("result", budget) for w in workers]
        pub.send("stop")
        pub.wait("result", 30)
        catchup = [x for r in results for x in r["catchup_ms"]]
        reconnect = [x for r in results for x in r["reconnect_ms"]]
        return {
            "target": target,
            "subscribers": args.subscribers,
            "rounds": args.rounds,
            "catchup_ms": H.summary_ms(catchup),
            "reconnect_beyond_away_ms": H.summary_ms(reconnect),
            "missed_per_resume": round(args.rate * args.away),
            "not_resumed": sum(r["not_resumed"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "gaps": sum(r["gaps"] for r in results),
            "duplicates": sum(r["dupes"] for r in results),
            "server_peak_rss_mb": round(H.rss_kb(server.pid, "VmHWM") / 1024, 1),
        }
    finally:
        server.stop()
        H.stop_clients()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=50, help="resuming subscribers (default 50)")
    p.add_argument("--rounds", type=int, default=2, help="drop/resume cycles each (default 2)")
    p.add_argument("--away", type=float, default=3.0, help="s away before resuming (default 3)")
    p.add_argument("--rate", type=float, default=200.0, help="msg/s published throughout (default 200)")
    p.add_argument("--spread", type=float, default=2.0, help="drops spread over this many s (default 2)")
    p.add_argument("--procs", type=int, default=1, help="subscriber worker processes (default 1)")
    p.add_argument("--targets", default="continuity,socketio", help="continuity and/or socketio")
    args = p.parse_args()
    H.install_cleanup()
    H.ensure_node_modules()
    machine = H.machine()
    runs = {}
    for target in args.targets.split(","):
        H.progress(f"resume catch-up: {target}, {args.subscribers} subscribers x {args.rounds} rounds")
        runs[target] = run_one(args, target)
        H.progress(f"  catch-up {runs[target]['catchup_ms']}")
    out: dict[str, Any] = {
        "benchmark": "resume_catchup",
        "machine": machine,
        "away_s": args.away,
        "rate": args.rate,
        "runs": list(runs.values()),
    }
    if "continuity" in runs and "socketio" in runs:
        c, s = runs["continuity"]["catchup_ms"], runs["socketio"]["catchup_ms"]
        out["ratio_continuity_over_socketio"] = {
            "p50": H.ratio(c["p50"], s["p50"]),
            "p99": H.ratio(c["p99"], s["p99"]),
        }
    H.emit(out)


if __name__ == "__main__":
    main()

"""The failover bench's figures (``bench/failover.py``): the workers' per-subscriber results and the
publisher's records turned into the failover time, lost/duplicated/reordered counts and the goals
(``DEFINITION`` in failover.py), and the nodes' logs after the kill as a timeline of events.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.failover_load import Publisher
from tests.support.streams import parse_serial

GOAL_P99_S = 2.0
LOG_EVENT_PREFIXES = ("connection.", "route.", "channel.", "member.suspect", "member.dead", "peer.link_lost")


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p99/max, rounded to ms; ``inf`` entries (never caught up) come out as None."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float | None:
        v = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        return None if math.isinf(v) else round(v, 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": rank(1.0)}


def log_timeline(workdir: Path, kill_t: float, victim: str) -> dict[str, dict[str, Any]]:
    """From the nodes' JSON logs: for each takeover/route/channel/membership event logged after kill_t,
    how many there were and when the first and last came (s after kill_t), and on which nodes."""
    spans: dict[str, dict[str, Any]] = {}
    for path in sorted(workdir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
                event = rec["event"]
                t = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if t < kill_t or not event.startswith(LOG_EVENT_PREFIXES):
                continue
            if event.startswith("member.") and rec.get("name") != victim:
                continue
            if event == "route.decided":
                event = f"route.decided:{rec.get('reason')}"
            span = spans.setdefault(
                event, {"count": 0, "first_s": t - kill_t, "last_s": t - kill_t, "nodes": []}
            )
            span["count"] += 1
            span["first_s"] = min(span["first_s"], t - kill_t)
            span["last_s"] = max(span["last_s"], t - kill_t)
            if path.stem not in span["nodes"]:
                span["nodes"].append(path.stem)
    for span in spans.values():
        span["first_s"], span["last_s"] = round(span["first_s"], 3), round(span["last_s"], 3)
    return dict(sorted(spans.items(), key=lambda kv: kv[1]["first_s"]))


def analyse(
    args: argparse.Namespace,
    pub: Publisher,
    results: list[dict[str, Any]],
    kill_t: float,
    victim: str,
    channel_homes: dict[str, str],
    owners: Counter[str],
    needed: dict[str, list[str]],
) -> dict[str, Any]:
    acked_by_channel = {ch: {r.serial for r in pub.acked(ch) if r.serial} for ch in pub.channels}
    lost = dup = reordered = epoch_changes = unacked_received = 0
    lost_samples: list[dict[str, Any]] = []
    ids_changed = 0
    failover: list[float] = []
    reconnect: list[float] = []
    others: list[float] = []
    noticed: list[float] = []
    affected = not_caught = not_reconnected = 0
    for s in results:
        received = {f"{ep}:{n}" for ep, runs in s["ranges"].items() for a, b in runs for n in range(a, b + 1)}
        attach = parse_serial(s["attach"]) if s["attach"] else None
        expected = {
            x
            for x in acked_by_channel[s["channel"]]
            if attach is None or parse_serial(x)[0] != attach[0] or parse_serial(x)[1] > attach[1]
        }
        missing = expected - received
        lost += len(missing)
        if missing and len(lost_samples) < 5:
            lost_samples.append(
                {
                    "client": s["i"],
                    "id": s["first_id"],
                    "server_at_kill": s.get("server_at_kill"),
                    "lost": len(missing),
                    "first": sorted(missing, key=parse_serial)[:5],
                }
            )
        unacked_received += len(received - acked_by_channel[s["channel"]])
        dup += s["dupes"]
        reordered += s["reorders"]
        epoch_changes += s["epoch_changes"]
        changed = bool(s["first_id"]) and s["ids"] != [s["first_id"]]
        ids_changed += changed
        if s.get("server_at_kill") == victim:
            affected += 1
            noticed.append(math.inf if s.get("disconnected") is None else s["disconnected"] - kill_t)
            ok_reconnect = s.get("reconnect_t") is not None and s.get("reconnect_id") == s["first_id"]
            if ok_reconnect:
                reconnect.append(s["reconnect_t"] - kill_t)
            else:
                not_reconnected += 1
                reconnect.append(math.inf)
            if ok_reconnect and not changed and s.get("caught_t") is not None:
                failover.append(max(s["reconnect_t"], s["caught_t"]) - kill_t)
            else:
                not_caught += 1
                failover.append(math.inf)
        elif s.get("caught_t") is not None:
            others.append(max(0.0, s["caught_t"] - kill_t))
    fo = percentiles(failover)
    nacks = [r for r in pub.records if r.error]
    return {
        "benchmark": "failover",
        "frontends": args.frontends,
        "clients": args.clients,
        "clients_with_results": len(results),
        "procs": args.procs,
        "channels": args.channels,
        "rate_per_s": args.rate,
        "seed": args.seed,
        "subscribers_per_frontend": dict(sorted(owners.items())),
        "publisher_on": pub.server,
        "channel_homes_at_kill": channel_homes,
        "victim": victim,
        "victim_was_home_of": sorted(ch for ch, fe in channel_homes.items() if fe == victim),
        "affected_clients": affected,
        "failover_to_caught_up_s": fo,
        "reconnect_s": percentiles(reconnect),
        "disconnect_noticed_s": percentiles(noticed),
        "not_caught_up": not_caught,
        "not_reconnected_same_id": not_reconnected,
        "unaffected_caught_up_s": percentiles(others),
        "needed_messages_per_channel": {ch: len(v) for ch, v in needed.items()},
        "published": len(pub.records),
        "acked": sum(1 for r in pub.records if r.serial),
        "publish_failures": len(nacks),
        "publish_failure_samples": [r.error for r in nacks[:3]],
        "lost": lost,
        "lost_samples": lost_samples,
        "duplicated": dup,
        "reordered": reordered,
        "epoch_changes_seen": epoch_changes,
        "received_but_not_acked": unacked_received,
        "connection_ids_changed": ids_changed,
        "goal": {
            f"p99_s<={GOAL_P99_S:g}": fo["p99"] is not None and fo["p99"] <= GOAL_P99_S,
            "lost==0": lost == 0,
            "dup==0": dup == 0,
        },
        "correctness": {
            "lost==0": lost == 0,
            "duplicated==0": dup == 0,
            "reordered==0": reordered == 0,
            "connection_ids_changed==0": ids_changed == 0,
        },
    }

"""The frontends' home events and transport losses, read from their log files onto the run's clock
(for ``tenures`` and the presence check).

Each daemon logs one JSON object a line (``kernel/logs.py``) with an ISO ``timestamp``; the run's
clock is seconds since the load clients' ``t0``, whose wall time the run records. Lines that are
not JSON (a traceback) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.chaos.tenures import EVENTS


def wall_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def home_events(paths: Iterable[tuple[str, Path]], wall_t0: float) -> list[dict[str, Any]]:
    """Every home event of the (node, log path) pairs, with ``t`` on the run's clock, in time order."""
    out = []
    for node, path in paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as f:
            for line in f:
                if '"channel.' not in line:
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(e, dict) or e.get("event") not in EVENTS or "timestamp" not in e:
                    continue
                out.append({**e, "node": node, "t": round(wall_seconds(e["timestamp"]) - wall_t0, 4)})
    return sorted(out, key=lambda e: e["t"])


def detach_times(paths: Iterable[tuple[str, Path]], wall_t0: float) -> dict[str, list[float]]:
    """connectionId -> the run-clock times any frontend logged ``connection.detached`` for it."""
    out: dict[str, list[float]] = {}
    for _, path in paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as f:
            for line in f:
                if '"connection.detached"' not in line:
                    continue
                try:
                    e = json.loads(line)
                    conn, ts = str(e["connection_id"]), e["timestamp"]
                except (ValueError, KeyError, TypeError):
                    continue
                out.setdefault(conn, []).append(round(wall_seconds(ts) - wall_t0, 4))
    return {conn: sorted(times) for conn, times in out.items()}


# Info-level events worth seeing beside the warnings when a violation is explained (``around``).
CONTEXT_EVENTS = frozenset({
    "channel.home_acquired", "channel.home_moved", "channel.homes_revalidated", "channel.acquire_deferred",
    "channel.handed_over", "peer.link_lost", "member.dead", "member.alive", "member.suspect",
})  # fmt: skip


def around(
    paths: Iterable[tuple[str, Path]], wall_t0: float, t: float, within_s: float, limit: int = 80
) -> list[str]:
    """The frontends' warnings (and ``CONTEXT_EVENTS``) within ``within_s`` of run time ``t``, one
    short line each in time order, at most ``limit``: what a failing run's report shows of the
    cluster beside a violation (CI keeps no workdir)."""
    rows: list[tuple[float, str]] = []
    for node, path in paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as f:
            for line in f:
                if '"warning"' not in line and '"error"' not in line and not any(
                    ev in line for ev in CONTEXT_EVENTS
                ):
                    continue
                try:
                    e = json.loads(line)
                    at = wall_seconds(e["timestamp"]) - wall_t0
                except (ValueError, KeyError, TypeError):
                    continue
                if abs(at - t) > within_s:
                    continue
                if e.get("level") not in ("warning", "error") and e.get("event") not in CONTEXT_EVENTS:
                    continue
                rest = {k: v for k, v in e.items() if k not in ("timestamp", "node_id", "level", "event")}
                rows.append((at, f"{at:8.3f} {node} {e.get('event')} {json.dumps(rest)[:220]}"))
    rows.sort()
    return [text for _, text in rows[:limit]]

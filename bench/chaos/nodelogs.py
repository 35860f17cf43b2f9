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

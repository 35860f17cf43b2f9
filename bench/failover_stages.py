"""Where a failover's time goes, per affected client: ``bench/failover.py``'s ``stages_s``.

Joins the clients' own records (when each left CONNECTED, was CONNECTED again, caught up) with the
daemons' JSON logs (structlog, one object a line), by connectionId:

- ``noticed``: the client left CONNECTED (its transport through the router ended);
- ``connecting``: the client started its first connect attempt (its backoff delay over);
- ``routed``: the router's first ``route.decided`` for the connection after the kill (its resume
  reached the router and was sent to a survivor; logged at info for every reason but new/owner);
- ``taken_over``: the survivor's ``connection.taken_over`` (the session adopted under a new epoch);
- ``connected``: the client's CONNECTED under its connectionId;
- ``caught_up``: the failover time itself (``DEFINITION`` in failover.py).

Each is in seconds after the kill, p50/p99/max over the affected clients that have it; ``gaps`` are the
same per client between consecutive stages, so ``noticed_to_connecting`` is the client's backoff,
``connecting_to_routed`` its TCP connect and upgrade request and the router's accept and parse,
``routed_to_taken_over`` the survivor's accept, upgrade and takeover, ``taken_over_to_connected``
CONNECTED's way back.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

STAGES = ("noticed", "connecting", "routed", "taken_over", "connected", "caught_up")


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    v = sorted(values)

    def rank(q: float) -> float:
        return round(v[max(0, math.ceil(q * len(v)) - 1)], 3)

    return {"n": len(v), "p50": rank(0.5), "p99": rank(0.99), "max": round(v[-1], 3)}


def _first_logged(workdir: Path, kill_t: float) -> dict[tuple[str, str], float]:
    """(event, connectionId) -> the first time it was logged after ``kill_t``, over every node's log."""
    wanted = ("route.decided", "connection.taken_over")
    first: dict[tuple[str, str], float] = {}
    for path in sorted(workdir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{") or not any(w in line for w in wanted):
                continue
            try:
                rec = json.loads(line)
                event, cid = rec["event"], rec.get("connection_id")
                t = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if t < kill_t or not cid or event not in wanted:
                continue
            key = (event, str(cid))
            if key not in first or t < first[key]:
                first[key] = t
    return first


def stages(workdir: Path, kill_t: float, victim: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """``stages_s`` and ``gaps_s`` (see the module docstring) for the clients on ``victim`` at the kill."""
    logged = _first_logged(workdir, kill_t)
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    gaps: dict[str, list[float]] = {f"{a}_to_{b}": [] for a, b in itertools.pairwise(STAGES)}
    for rec in results:
        if rec.get("server_at_kill") != victim or not rec.get("first_id"):
            continue
        cid = rec["first_id"]
        at = {
            "noticed": rec.get("disconnected"),
            "connecting": rec.get("connecting"),
            "routed": logged.get(("route.decided", cid)),
            "taken_over": logged.get(("connection.taken_over", cid)),
            "connected": rec.get("reconnect_t"),
            "caught_up": rec.get("caught_t"),
        }
        for s in STAGES:
            if at[s] is not None:
                per_stage[s].append(at[s] - kill_t)
        for a, b in itertools.pairwise(STAGES):
            if at[a] is not None and at[b] is not None:
                gaps[f"{a}_to_{b}"].append(at[b] - at[a])
    return {
        "stages_s": {s: _pcts(v) for s, v in per_stage.items()},
        "gaps_s": {g: _pcts(v) for g, v in gaps.items()},
    }

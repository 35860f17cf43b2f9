"""The local cluster's map (``localcluster.py``): ``GET /cluster`` of every node, whether the cluster
is up, and the map as a table (``status``).

The cluster is *up* when every running node answers ``GET /cluster`` and lists every running node as
``alive``. Every wait polls that condition against a deadline; nothing sleeps in the hope that
something has happened.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from localcluster_nodes import POLL_INTERVAL_S, ClusterError, NodeSpec, StateDir

HTTP_TIMEOUT_S = 1.0
COLUMNS = (
    "node",
    "role",
    "zone",
    "status",
    "serving",
    "load",
    "incarnation",
    "address",
    "pid",
    "alive-by-pid",
)


def fetch_map(spec: NodeSpec, timeout: float = HTTP_TIMEOUT_S) -> list[dict[str, Any]] | None:
    """The members of ``GET /cluster`` on ``spec``'s client port, or None if it did not answer 200.

    The frontend answers ``{"members": [...], ...}``; the router answers the list itself."""
    conn = http.client.HTTPConnection(spec.host, spec.client_port, timeout=timeout)
    try:
        conn.request("GET", "/cluster")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    members = data.get("members") if isinstance(data, dict) else data
    return members if isinstance(members, list) else None


def fetch_maps(specs: Iterable[NodeSpec]) -> dict[str, list[dict[str, Any]] | None]:
    return {spec.name: fetch_map(spec) for spec in specs}


def convergence_problems(
    expected: Sequence[str], maps: Mapping[str, list[dict[str, Any]] | None]
) -> list[str]:
    """What stops ``expected`` from being up: every one answers and sees every one ``alive``. Pure."""
    problems = []
    for viewer in expected:
        members = maps.get(viewer)
        if members is None:
            problems.append(f"{viewer} does not answer GET /cluster")
            continue
        status = {m.get("node_id"): m.get("status") for m in members}
        problems += [
            f"{viewer} sees {n} as {status.get(n) or 'unknown'}" for n in expected if status.get(n) != "alive"
        ]
    return problems


def culprit(expected: Sequence[str], problems: Sequence[str]) -> str | None:
    """The node the most problems name as silent or not alive (the one whose log to show). Pure."""
    counts = {n: 0 for n in expected}
    for p in problems:
        words = p.split()
        name = words[0] if "does not answer" in p else words[2]
        if name in counts:
            counts[name] += 2 if "does not answer" in p else 1
    best = max(counts, key=lambda n: counts[n], default=None)
    return best if best is not None and counts[best] else None


def wait_until_up(
    state: StateDir,
    specs: Sequence[NodeSpec],
    timeout: float,
    exited: Callable[[], dict[str, str]] = dict,
) -> None:
    """Poll until every node of ``specs`` is alive in every one's map; ClusterError (with the failing
    node's log tail) at the deadline, or at once if ``exited()`` names a node that has exited."""
    names = [s.name for s in specs]
    by_name = {s.name: s for s in specs}
    deadline = time.monotonic() + timeout
    while True:
        dead = exited()
        if dead:
            name, how = next(iter(dead.items()))
            raise ClusterError(f"{name} {how}; last lines of {state.log(name)}:\n{state.tail(name)}")
        problems = convergence_problems(names, fetch_maps(by_name[n] for n in names))
        if not problems:
            return
        if time.monotonic() >= deadline:
            name = culprit(names, problems) or names[0]
            shown = "\n  ".join(problems[:10])
            if len(problems) > 10:
                shown += f"\n  ... and {len(problems) - 10} more"
            raise ClusterError(
                f"the cluster was not up after {timeout:g} s:\n  {shown}\n"
                f"last lines of {state.log(name)}:\n{state.tail(name)}"
            )
        time.sleep(POLL_INTERVAL_S)  # the poll interval of a deadline-bounded poll


def table_rows(
    state: StateDir, specs: Sequence[NodeSpec], maps: Mapping[str, list[dict[str, Any]] | None]
) -> tuple[str | None, list[dict[str, Any]], list[str]]:
    """``(viewer, rows, disagreements)``: the map as the first answering node sees it (routers first,
    as they are the client's entry point), a row for every node, and where other views differ."""
    order = [s.name for s in specs if s.role == "router"] + [s.name for s in specs if s.role == "frontend"]
    viewer = next((n for n in order if maps.get(n) is not None), None)
    seen = {m["node_id"]: m for m in (maps.get(viewer) or [])} if viewer else {}
    rows = []
    configured = {s.name: s for s in specs}
    for name in [*order, *sorted(set(seen) - set(order))]:
        spec = configured.get(name)
        fallback = (
            {
                "role": spec.role,
                "zone": spec.config.get("zone"),
                "client_addr": f"{spec.host}:{spec.client_port}",
            }
            if spec
            else {}
        )
        m = {**fallback, **seen.get(name, {})}
        pid = state.pid(name)
        rows.append(
            {
                "node": name,
                "role": m.get("role", "?"),
                "zone": m.get("zone", "?"),
                "status": m.get("status", "unknown"),
                "serving": m.get("serving", "?"),
                "load": m.get("load", "?"),
                "incarnation": m.get("incarnation", "?"),
                "address": m.get("client_addr", "?"),
                "pid": pid if pid is not None else "-",
                "alive-by-pid": "yes" if pid is not None else "no",
            }
        )
    disagreements = []
    for other in order:
        if other == viewer or maps.get(other) is None:
            continue
        theirs = {m["node_id"]: m.get("status") for m in maps[other] or []}
        disagreements += [
            f"{other} sees {n} as {theirs.get(n) or 'unknown'}"
            for n, m in seen.items()
            if theirs.get(n) != m.get("status")
        ]
    return viewer, rows, disagreements


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """Rows as a left-aligned text table with a header line. Pure."""
    cells = [list(columns)] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def print_status(state: StateDir, specs: Sequence[NodeSpec], *, as_json: bool = False) -> bool:
    """Print the map; return False if no node answered."""
    viewer, rows, disagreements = table_rows(state, specs, fetch_maps(specs))
    if as_json:
        print(json.dumps({"viewer": viewer, "nodes": rows, "disagreements": disagreements}, indent=2))
        return viewer is not None
    if viewer is None:
        print(f"no node of {state.root} answers GET /cluster; is the cluster up? (`make cluster-up`)")
    else:
        print(f"cluster map as {viewer} sees it:")
    print(format_table(rows))
    for d in disagreements:
        print(f"  note: {d}")
    return viewer is not None

"""Run every benchmark once, in sequence, and print one JSON document (``make bench``).

    python bench/run_all.py                 # everything, about 6-10 minutes on 2 cores
    python bench/run_all.py --only fanout_compare,resume_catchup
    python bench/run_all.py --markdown bench/results/latest.json   # the README table from a saved run

Each benchmark is its own script in bench/ and prints its own JSON; this collects them under
their names, adds a short summary of the headline figures and ratios, writes the whole to
``--out`` (default bench/results/latest.json) and prints it. A benchmark that fails is recorded
with its exit status and the tail of its stderr, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness as H

BENCH = Path(__file__).resolve().parent
# name -> arguments; the defaults of each script are the documented workloads.
SUITE: dict[str, list[str]] = {
    "fanout_compare": ["fanout_compare.py"],
    "resume_catchup": ["resume_catchup.py"],
    # One frontend per zone while the 2,000 subscribers connect through the router, so the victim owns
    # about 1,000 (4 frontends from the start would need 4,000 Python SDK clients, more than 2 cores
    # carry); then a spare starts in the victim's zone, so the kill leaves both zones alive and
    # publishes keep being ACKed through it (no home ACKs while the other zone is out of reach).
    "failover": ["failover.py", "--clients", "2000", "--frontends", "2+1", "--rate", "2"],
    "detached_memory": ["detached_memory.py"],
    "router_overhead": ["router_overhead.py"],
    # Issue 16: 5,000 channels x 4 (clamped to what the open-file limit holds) and 1,250 x 4, Socket.IO rooms.
    "many_channels": ["many_channels.py"],
    # Issue 16, one machine, all cores: 1 and 2 frontends behind one router.
    "scaling": ["scaling.py"],
    "connections": ["connections.py"],
    # Write-through cost of persisted channels: memory only vs SQLite vs PostgreSQL, same run.
    "history_store": ["history_store.py", "--seconds", "5"],
}


def run(name: str, argv: list[str]) -> dict[str, Any]:
    H.progress(f"=== {name}: {' '.join(argv)}")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / argv[0]), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    H._procs.append(proc)  # type: ignore[arg-type]
    err_tail: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        text = line.decode(errors="replace")
        sys.stderr.write(text)
        err_tail = [*err_tail[-20:], text]
    out = proc.stdout.read()
    rc = proc.wait()
    wall = round(time.monotonic() - t0, 1)
    try:
        result = json.loads(out)
    except ValueError:
        return {"error": f"exit status {rc}, no JSON", "stderr_tail": "".join(err_tail), "wall_s": wall}
    if rc != 0:
        result["exit_status"] = rc
    result["wall_s"] = wall
    return result


def pick(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The summary's cells of one benchmark's row: ``keys`` in that order, those the row has."""
    return {k: row[k] for k in keys if k in row}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    fc = results.get("fanout_compare", {})
    for row in fc.get("comparison", []):
        s[f"fanout_{row['subscribers']}_{row['mode']}"] = pick(
            row,
            (
                "continuity_deliveries_per_s",
                "socketio_deliveries_per_s",
                "throughput_ratio",
                "continuity_p99_ms",
                "socketio_p99_ms",
                "p99_ratio",
                "continuity_deliveries_per_cpu_s",
                "socketio_deliveries_per_cpu_s",
                "cpu_efficiency_ratio",
                "target_met",
                "issue16_target_met",
            ),
        )
    rc = results.get("resume_catchup", {})
    for run_ in rc.get("runs", []):
        s[f"resume_catchup_ms_{run_['target']}"] = run_["catchup_ms"]
    if "ratio_continuity_over_socketio" in rc:
        s["resume_catchup_ratio"] = rc["ratio_continuity_over_socketio"]
    fo = results.get("failover", {})
    if "failover_to_caught_up_s" in fo:
        s["failover"] = pick(
            fo,
            (
                "frontends",
                "affected_clients",
                "failover_to_caught_up_s",
                "not_caught_up",
                "lost",
                "duplicated",
                "connection_ids_changed",
                "goal",
                "correct",
                "workdir",
            ),
        )
    dm = results.get("detached_memory", {})
    if "detached_state_bytes_per_connection" in dm:
        s["detached_memory"] = pick(
            dm,
            (
                "detached_state_bytes_per_connection",
                "rss_after_detach_per_connection_bytes",
                "slope_bytes_per_connection_per_message",
            ),
        )
    ro = results.get("router_overhead", {})
    for row in ro.get("runs", []):
        s[f"router_{row['mode']}"] = {
            "throughput_ratio_router_over_direct": row["throughput_ratio_router_over_direct"],
            "p99_ratio_router_over_direct": row["p99_ratio_router_over_direct"],
        }
    for row in results.get("many_channels", {}).get("comparison", []):
        s[f"many_channels_{row['channels']}x{row['members']}"] = pick(
            row,
            (
                "continuity_deliveries_per_s",
                "socketio_deliveries_per_s",
                "throughput_ratio",
                "continuity_p99_ms",
                "socketio_p99_ms",
                "p99_ratio",
                "cpu_per_delivery_ratio",
                "target_met",
            ),
        )
    for row in results.get("scaling", {}).get("comparison", []):
        s[f"scaling_{row['mode']}"] = row
    co = results.get("connections", {})
    if "connections_held" in co:
        s["connections"] = pick(
            co,
            (
                "connections_held",
                "rss_end_mb",
                "rss_per_connection_bytes",
                "extrapolated_connections_within_limit",
                "connect_per_s_median",
            ),
        )
    return s


def _row(*cells: object) -> str:
    return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def _n(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def many_rows(mc: dict[str, Any]) -> list[str]:
    """bench/many_channels.py: per shape, deliveries/s, p50/p99 and CPU per delivery beside Socket.IO."""
    rows = []
    for x in mc.get("comparison", []):
        load = x["loadavg_before"]["continuity"][0], x["loadavg_before"]["socketio"][0]
        name = (
            f"many channels {x['channels']:,} x {x['members']} ({x['connections'][0]:,} connections;"
            f" load {load[0]} / {load[1]}; every message delivered: {x['every_message_delivered']},"
            f" connections cut by the server {x.get('connections_cut')})"
        )
        rows.append(
            _row(
                name,
                "deliveries/s",
                _n(x["continuity_deliveries_per_s"]),
                _n(x["socketio_deliveries_per_s"]),
                f"{x['throughput_ratio']} C/S",
            )
        )
        for q in ("p50", "p99"):
            c, s = x[f"continuity_{q}_ms"], x[f"socketio_{q}_ms"]
            rows.append(_row(name, f"{q} ms", c, s, f"{H.ratio(c, s)} C/S"))
        rows.append(
            _row(
                name,
                "server CPU per delivery us",
                x["continuity_cpu_per_delivery_us"],
                x["socketio_cpu_per_delivery_us"],
                f"{x['cpu_per_delivery_ratio']} C/S",
            )
        )
    return rows


def scaling_rows(sc: dict[str, Any]) -> list[str]:
    """bench/scaling.py: deliveries/s and cluster CPU with 1 and 2 frontends behind one router."""
    rows = []
    by = {(x["mode"], x["frontends"]): x for x in sc.get("runs", [])}
    for x in sc.get("comparison", []):
        one, two = by[(x["mode"], 1)], by[(x["mode"], x["frontends"][1])]
        name = f"scaling, N={one['subscribers']} {x['mode']} via router (load {one['loadavg_before'][0]})"
        rows.append(
            _row(
                name,
                "deliveries/s 1 / 2 frontends",
                f"{_n(one['deliveries_per_s'])} / {_n(two['deliveries_per_s'])}",
                "",
                f"{x['throughput_ratio']} 2/1",
            )
        )
        rows.append(
            _row(
                name,
                "p99 ms 1 / 2 frontends",
                f"{one['latency_ms']['p99']} / {two['latency_ms']['p99']}",
                "",
                f"{x['p99_ratio']} 2/1",
            )
        )
        rows.append(
            _row(
                name,
                "deliveries per cluster CPU-s 1 / 2",
                f"{_n(one['deliveries_per_cluster_cpu_s'])} / {_n(two['deliveries_per_cluster_cpu_s'])}",
                "",
                f"{x['deliveries_per_cpu_s_ratio']} 2/1",
            )
        )
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """The README table: one row per figure."""
    r = doc["results"]
    rows = [
        _row("benchmark", "figure", "Continuity", "Socket.IO 4.8 (CSR on)", "ratio"),
        "|---|---|---|---|---|",
    ]
    for x in r.get("fanout_compare", {}).get("comparison", []):
        name = f"fan-out N={x['subscribers']} {x['mode']}"
        if x.get("loadavg_before"):
            name += f" (load {x['loadavg_before']['continuity'][0]} / {x['loadavg_before']['socketio'][0]})"
        rows.append(
            _row(
                name,
                "deliveries/s",
                _n(x["continuity_deliveries_per_s"]),
                _n(x["socketio_deliveries_per_s"]),
                f"{x['throughput_ratio']} C/S",
            )
        )
        rows.append(
            _row(name, "p99 ms", x["continuity_p99_ms"], x["socketio_p99_ms"], f"{x['p99_ratio']} C/S")
        )
        if "cpu_efficiency_ratio" in x:
            rows.append(
                _row(
                    name,
                    "deliveries per server CPU-s",
                    _n(x["continuity_deliveries_per_cpu_s"]),
                    _n(x["socketio_deliveries_per_cpu_s"]),
                    f"{x['cpu_efficiency_ratio']} C/S",
                )
            )
    rc = {x["target"]: x for x in r.get("resume_catchup", {}).get("runs", [])}
    if rc:
        c, s = rc.get("continuity", {}).get("catchup_ms", {}), rc.get("socketio", {}).get("catchup_ms", {})
        ratio = r["resume_catchup"].get("ratio_continuity_over_socketio", {})
        for q in ("p50", "p99"):
            rows.append(
                _row("resume catch-up, 3 s away at 200 msg/s", f"{q} ms", c.get(q), s.get(q), ratio.get(q))
            )
    fo = r.get("failover", {})
    if "failover_to_caught_up_s" in fo:
        f = fo["failover_to_caught_up_s"]
        rows.append(
            _row(
                f"failover: kill -9 of an owner of {fo.get('affected_clients')} connections"
                f" ({fo.get('clients')} clients, frontends {fo.get('frontends')}, lost {fo.get('lost')},"
                f" duplicated {fo.get('duplicated')},"
                f" connectionIds changed {fo.get('connection_ids_changed')})",
                "caught up p50 / p99 / max s",
                f"{f.get('p50')} / {f.get('p99')} / {f.get('max')}",
                "",
                "",
            )
        )
    dm = r.get("detached_memory", {})
    if "detached_state_bytes_per_connection" in dm:
        own, rss = dm["detached_state_bytes_per_connection"], dm["rss_after_detach_per_connection_bytes"]
        rows.append(
            _row(
                f"detached, {dm['channels_per_connection']} channels",
                "bytes (own account / RSS)",
                f"{own:.0f} / {rss}",
                "",
                "",
            )
        )
        slope = dm["slope_bytes_per_connection_per_message"]
        rows.append(_row("detached", "bytes per message published while away", slope, "", ""))
    for x in r.get("router_overhead", {}).get("runs", []):
        d, v, name = x["direct"], x["router"], f"router, N={x['subscribers']} {x['mode']}"
        rows.append(
            _row(
                name,
                "deliveries/s direct / routed",
                f"{_n(d['deliveries_per_s'])} / {_n(v['deliveries_per_s'])}",
                "",
                f"{x['throughput_ratio_router_over_direct']} routed/direct",
            )
        )
        rows.append(
            _row(
                name,
                "p99 ms direct / routed",
                f"{d['latency_ms']['p99']} / {v['latency_ms']['p99']}",
                "",
                f"{x['p99_ratio_router_over_direct']} routed/direct",
            )
        )
    rows += many_rows(r.get("many_channels", {})) + scaling_rows(r.get("scaling", {}))
    co = r.get("connections", {})
    if "connections_held" in co:
        rows.append(
            _row(
                "idle connections",
                "held (RSS MB)",
                f"{_n(co['connections_held'])} ({co['rss_end_mb']})",
                "",
                "",
            )
        )
        rows.append(
            _row(
                "idle connections",
                "RSS per connection B; extrapolated within 2 GiB",
                f"{_n(co['rss_per_connection_bytes'])}; {_n(co['extrapolated_connections_within_limit'])}",
                "",
                "",
            )
        )
        rows.append(_row("idle connections", "connect rate /s", co["connect_per_s_median"], "", ""))
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(SUITE)}")
    p.add_argument("--out", default=str(BENCH / "results" / "latest.json"), help="where to save the JSON")
    p.add_argument("--markdown", metavar="JSON", help="print the README table of a saved run and exit")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    H.install_cleanup()
    H.ensure_node_modules()
    names = args.only.split(",") if args.only else list(SUITE)
    unknown = set(names) - set(SUITE)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "benchmark": "all",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": H.machine(),
    }
    results = {name: run(name, SUITE[name]) for name in names}
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    doc["summary"] = summary(results)
    doc["results"] = results
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    H.emit(doc)
    H.progress(f"saved {out}; README table: python bench/run_all.py --markdown {out}")


if __name__ == "__main__":
    main()

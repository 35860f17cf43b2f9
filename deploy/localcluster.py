#!/usr/bin/env python3
"""Drive the local two-zone Continuity cluster on 127.0.0.1: routers rt1/rt2, frontends fe-a1/fe-a2
(zone a) and fe-b1/fe-b2 (zone b).

    localcluster.py run                    foreground, prefixed logs, Ctrl-C stops everything
    localcluster.py up                     background; returns once every member is alive in every map
    localcluster.py status [--json]        the cluster map as a table
    localcluster.py kill fe-a1 [--signal KILL|TERM]
    localcluster.py start fe-a1
    localcluster.py down

Theory of operation: the templates in ``deploy/local/*.toml`` are copied, with every port shifted by
``--port-offset``, into ``<state-dir>/conf/``; the generated files (and ``<state-dir>/state.json``,
which records the offset) are the cluster's description for every later command. A node is *running*
when ``<state-dir>/pids/<node>.pid`` names a live, non-zombie process whose command line contains its
generated config path (so a recycled pid is never mistaken for it). The cluster is *up* when every
running node answers ``GET /cluster`` and lists every running node as ``alive``. Every wait polls
that condition against a deadline; nothing sleeps in the hope that something has happened.

This file holds the commands and the command line; ``localcluster_nodes.py`` the nodes (configs,
state dir, processes), ``localcluster_map.py`` the cluster map (up or not, the status table),
``localcluster_foreground.py`` the foreground cluster of ``run``. They import each other by plain
name, as modules of this script's directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from localcluster_foreground import run_foreground
from localcluster_map import print_status, wait_until_up
from localcluster_nodes import (
    REPO,
    STOP_TIMEOUT_S,
    ClusterError,
    NodeSpec,
    StateDir,
    check_ports_free,
    exited_of,
    start_background,
    stop,
    topology,
)

DEFAULT_STATE_DIR = REPO / ".cluster"
UP_TIMEOUT_S = 30.0
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


# --- commands --------------------------------------------------------------------------------------


def with_history(specs: list[NodeSpec], store: str | None, persist: Sequence[str]) -> list[NodeSpec]:
    """The frontends' configs with a history store and ``[channels."<pattern>"]`` persist rules."""
    rules = {}
    for item in persist:
        pattern, sep, duration = item.rpartition("=")
        if not sep or not pattern:
            raise ClusterError(f"--persist {item!r} must look like PATTERN=DURATION, e.g. chat:*=24h")
        rules[pattern] = {"persist": duration}
    if rules and not (store or "").startswith(("postgresql://", "postgres://")):
        # Each frontend's own SQLite would hold only what it wrote as a channel's home; the
        # frontends refuse it (frontend/config.py), so say it here first.
        raise ClusterError(
            "--persist in a cluster needs --history-store postgresql://..., one store shared by every "
            "frontend (make cluster-up-pg starts Debian's PostgreSQL for it); SQLite is for a "
            "standalone frontend (make run-standalone)"
        )
    out = []
    for spec in specs:
        if spec.role == "frontend" and (store or rules):
            config = dict(spec.config)
            if store:
                config["history_store"] = store
            if rules:
                config["channels"] = rules
            spec = NodeSpec(name=spec.name, role=spec.role, config=config)
        out.append(spec)
    return out


def prepare(
    state: StateDir, offset: int, routers: bool, store: str | None = None, persist: Sequence[str] = ()
) -> list[NodeSpec]:
    """Generate the configs for ``offset``; refuse if a cluster with another offset is running there."""
    recorded = state.recorded_offset()
    if recorded is not None and recorded != offset:
        running = [s.name for s in state.specs() if state.pid(s.name) is not None]
        if running:
            raise ClusterError(
                f"{state.root} holds a cluster with --port-offset {recorded} and "
                f"{', '.join(running)} running; "
                "run `down` first or use the same offset"
            )
    specs = with_history(topology(offset, routers=routers), store, persist)
    state.write(specs, offset)
    return specs


def cmd_up(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    specs = prepare(state, args.port_offset, not args.no_routers, args.history_store, args.persist)
    missing = [s for s in specs if state.pid(s.name) is None]
    for spec in missing:  # all ports first, so a conflict starts nothing
        check_ports_free(spec)
    started = {s.name: start_background(state, s) for s in missing}
    print(f"started {', '.join(started)}" if started else "every node was already running")
    wait_until_up(state, specs, args.timeout, exited_of(started))
    print_status(state, specs)
    return 0


def running_specs(state: StateDir) -> list[NodeSpec]:
    return [s for s in state.specs() if state.pid(s.name) is not None]


def find(state: StateDir, name: str) -> NodeSpec:
    specs = {s.name: s for s in state.specs()}
    if name not in specs:
        raise ClusterError(f"unknown node {name!r}; the nodes of {state.root} are {', '.join(specs)}")
    return specs[name]


def cmd_start(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    spec = find(state, args.node)
    if state.pid(spec.name) is not None:
        print(f"{spec.name} is already running (pid {state.pid(spec.name)})")
        started = {}
    else:
        started = {spec.name: start_background(state, spec)}
        print(f"started {spec.name} (pid {started[spec.name].pid}), log {state.log(spec.name)}")
    wait_until_up(state, running_specs(state), args.timeout, exited_of(started))
    print(f"{spec.name} is alive in every running member's map")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    spec = find(state, args.node)
    pid = state.pid(spec.name)
    if pid is None:
        raise ClusterError(f"{spec.name} is not running")
    sig = SIGNALS[args.signal]
    if args.no_wait:
        os.kill(pid, sig)
        print(f"sent SIG{args.signal} to {spec.name} (pid {pid})")
    else:
        stop(state, [spec.name], sig)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    try:
        specs = state.specs()
    except ClusterError:
        print(f"nothing to stop in {state.root}")
        return 0
    names = [s.name for s in specs if state.pid(s.name) is not None]
    if not names:
        print("no node is running")
    stop(state, names, timeout=args.timeout)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    return 0 if print_status(state, state.specs(), as_json=args.json) else 1


def cmd_run(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    specs = prepare(state, args.port_offset, not args.no_routers, args.history_store, args.persist)
    running = [s.name for s in specs if state.pid(s.name) is not None]
    if running:
        raise ClusterError(
            f"{', '.join(running)} already running from {state.root}; `make cluster-down` first"
        )
    for spec in specs:
        check_ports_free(spec)
    return run_foreground(state, specs, timeout=args.timeout)


# --- command line ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where configs, pid files and logs live (default {DEFAULT_STATE_DIR})",
    )
    starting = argparse.ArgumentParser(add_help=False)
    starting.add_argument(
        "--port-offset", type=int, default=0, help="add this to every port of deploy/local/*.toml (default 0)"
    )
    starting.add_argument("--no-routers", action="store_true", help="start the four frontends only")
    starting.add_argument(
        "--history-store",
        metavar="URL",
        help="the frontends' history_store (e.g. a postgresql:// URL shared by all of them)",
    )
    starting.add_argument(
        "--persist",
        action="append",
        default=[],
        metavar="PATTERN=DURATION",
        help='persist channels matching PATTERN for DURATION (e.g. "chat:*=24h"); repeatable',
    )
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout",
        type=float,
        default=UP_TIMEOUT_S,
        help=f"seconds to wait for every member to be alive in every map (default {UP_TIMEOUT_S:g})",
    )

    p = argparse.ArgumentParser(
        prog="localcluster.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sp = sub.add_parser(
        "run", parents=[common, starting, waiting], help="run the cluster in the foreground; Ctrl-C stops it"
    )
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser(
        "up",
        parents=[common, starting, waiting],
        help="start the cluster in the background and wait until it is up (idempotent)",
    )
    sp.set_defaults(func=cmd_up)
    sp = sub.add_parser("status", parents=[common], help="print the cluster map as a table")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.set_defaults(func=cmd_status)
    sp = sub.add_parser("kill", parents=[common], help="signal one node and wait for it to exit")
    sp.add_argument("node", help="node name, e.g. fe-a1")
    sp.add_argument(
        "--signal",
        choices=sorted(SIGNALS),
        default="TERM",
        type=str.upper,
        help="TERM drains (default), KILL is kill -9",
    )
    sp.add_argument("--no-wait", action="store_true", help="return once the signal is sent")
    sp.set_defaults(func=cmd_kill)
    sp = sub.add_parser(
        "start",
        parents=[common, waiting],
        help="start one stopped node and wait until it is alive in every map",
    )
    sp.add_argument("node", help="node name, e.g. fe-a1")
    sp.set_defaults(func=cmd_start)
    sp = sub.add_parser("down", parents=[common], help="stop every node (SIGTERM, then SIGKILL)")
    sp.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        help=f"seconds before stragglers get SIGKILL (default {STOP_TIMEOUT_S:g})",
    )
    sp.set_defaults(func=cmd_down)
    args = p.parse_args(argv)
    args.state_dir = args.state_dir.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args))
    except ClusterError as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

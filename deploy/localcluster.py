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
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "deploy" / "local"
DEFAULT_STATE_DIR = REPO / ".cluster"
ROUTERS = ("rt1", "rt2")
FRONTENDS = ("fe-a1", "fe-a2", "fe-b1", "fe-b2")
UP_TIMEOUT_S = 30.0
# Above the frontend's default drain_timeout_s (10 s): a draining frontend is given time to finish.
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1
HTTP_TIMEOUT_S = 1.0
LOG_TAIL_LINES = 25
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}
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


class ClusterError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


# --- the topology: templates shifted by the port offset --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One daemon of the local cluster, its config already shifted by the port offset."""

    name: str
    role: str  # "frontend" or "router": the Python package run with -m
    config: Mapping[str, Any]

    @property
    def host(self) -> str:
        return str(self.config.get("host", "127.0.0.1"))

    @property
    def client_port(self) -> int:
        return int(self.config["port"])

    @property
    def gossip_port(self) -> int:
        return _port_of(str(self.config["gossip_bind"]))

    @property
    def peer_port(self) -> int | None:
        port = self.config.get("peer_port")
        return int(port) if port else None


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def _shift_address(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}"


def shift_ports(config: Mapping[str, Any], offset: int) -> dict[str, Any]:
    """``config`` with its client, peer and gossip ports and its seeds moved up by ``offset``."""
    out = dict(config)
    out["port"] = int(config["port"]) + offset
    if config.get("peer_port"):
        out["peer_port"] = int(config["peer_port"]) + offset
    out["gossip_bind"] = _shift_address(str(config["gossip_bind"]), offset)
    out["seeds"] = [_shift_address(s, offset) for s in config.get("seeds", ())]
    return out


def topology(offset: int, *, routers: bool = True) -> list[NodeSpec]:
    """Every node of the cluster (frontends first: they are the gossip seeds), read from the templates."""
    names = [(n, "frontend") for n in FRONTENDS] + ([(n, "router") for n in ROUTERS] if routers else [])
    specs = []
    for name, role in names:
        with open(TEMPLATES / f"{name}.toml", "rb") as fh:
            specs.append(NodeSpec(name=name, role=role, config=shift_ports(tomllib.load(fh), offset)))
    return specs


def render_toml(config: Mapping[str, Any]) -> str:
    """A TOML document of what the local templates hold: scalars and lists of scalars, and tables of
    tables such as ``[keys."demo.browser"]`` (whose own table values are written inline)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    text = "".join(f"{k} = {value(v)}\n" for k, v in config.items() if not isinstance(v, Mapping))
    for name, table in config.items():
        if isinstance(table, Mapping):
            for sub, items in table.items():
                text += f"\n[{name}.{json.dumps(sub)}]\n"
                text += "".join(f"{k} = {value(v)}\n" for k, v in items.items())
    return text


# --- state on disk: generated configs, pid files, logs ----------------------------------------------


class StateDir:
    """``conf/<node>.toml``, ``pids/<node>.pid``, ``logs/<node>.log`` and ``state.json`` under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf_dir = root / "conf"
        self.pid_dir = root / "pids"
        self.log_dir = root / "logs"

    def conf(self, name: str) -> Path:
        return self.conf_dir / f"{name}.toml"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def write(self, specs: Sequence[NodeSpec], offset: int) -> None:
        """Generate every node's config and record the port offset."""
        for d in (self.conf_dir, self.pid_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            header = f"# Generated by deploy/localcluster.py from deploy/local/{spec.name}.toml, "
            header += f"ports +{offset}.\n"
            self.conf(spec.name).write_text(header + render_toml(spec.config))
        (self.root / "state.json").write_text(json.dumps({"port_offset": offset}) + "\n")

    def recorded_offset(self) -> int | None:
        try:
            return int(json.loads((self.root / "state.json").read_text())["port_offset"])
        except (OSError, ValueError, KeyError):
            return None

    def specs(self) -> list[NodeSpec]:
        """The nodes whose configs were generated, in topology order; ClusterError if there are none."""
        specs = []
        for name in (*FRONTENDS, *ROUTERS):
            path = self.conf(name)
            if path.exists():
                with open(path, "rb") as fh:
                    role = "router" if name in ROUTERS else "frontend"
                    specs.append(NodeSpec(name=name, role=role, config=tomllib.load(fh)))
        if not specs:
            raise ClusterError(f"no cluster in {self.root}: run `localcluster.py up` first")
        return specs

    def pid(self, name: str) -> int | None:
        """The pid of ``name`` if it is running (see the module docstring), else None."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid, marker=str(self.conf(name))) else None

    def forget(self, name: str) -> None:
        self.pid_file(name).unlink(missing_ok=True)

    def tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def process_alive(pid: int, *, marker: str | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie, and (where /proc can tell) its command line has ``marker``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process reusing the pid
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): the signal check is all we have
    try:
        state = proc.joinpath("stat").read_text().rpartition(")")[2].split()[0]
        cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and (marker is None or marker in cmdline)


def node_command(spec: NodeSpec, conf: Path) -> list[str]:
    return [sys.executable, "-m", spec.role, "--config", str(conf)]


def check_ports_free(spec: NodeSpec) -> None:
    """Raise ClusterError naming the first of ``spec``'s ports that something else holds."""
    wanted = [
        ("client", socket.SOCK_STREAM, spec.client_port),
        ("gossip", socket.SOCK_DGRAM, spec.gossip_port),
        ("gossip", socket.SOCK_STREAM, spec.gossip_port),
    ]
    if spec.peer_port:
        wanted.append(("peer", socket.SOCK_STREAM, spec.peer_port))
    for what, kind, port in wanted:
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((spec.host, port))
            except OSError as exc:
                raise ClusterError(
                    f"{spec.name}: {what} port {spec.host}:{port} is in use ({exc.strerror}); "
                    "is another cluster running? (`make cluster-down`, or pick another --port-offset)"
                ) from None


# --- the cluster map -------------------------------------------------------------------------------


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


# --- starting and stopping processes ---------------------------------------------------------------


def spawn(state: StateDir, spec: NodeSpec, *, stdout: Any) -> subprocess.Popen[bytes]:
    """Start ``spec`` in its own session (so a terminal's Ctrl-C reaches only us) and write its pid file."""
    proc = subprocess.Popen(
        node_command(spec, state.conf(spec.name)),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.pid_file(spec.name).write_text(f"{proc.pid}\n")
    return proc


def start_background(state: StateDir, spec: NodeSpec) -> subprocess.Popen[bytes]:
    check_ports_free(spec)
    with open(state.log(spec.name), "ab") as log:
        return spawn(state, spec, stdout=log)


def exited_of(procs: Mapping[str, subprocess.Popen[bytes]]) -> Callable[[], dict[str, str]]:
    def exited() -> dict[str, str]:
        return {n: f"exited with code {p.returncode}" for n, p in procs.items() if p.poll() is not None}

    return exited


def stop(
    state: StateDir,
    names: Sequence[str],
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = STOP_TIMEOUT_S,
) -> None:
    """Send ``sig`` to each running node, wait for them to exit, SIGKILL stragglers at the deadline."""
    pids = {n: pid for n in names if (pid := state.pid(n)) is not None}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    start = time.monotonic()
    waiting = dict(pids)
    while waiting and time.monotonic() - start < timeout:
        for name in [n for n, pid in waiting.items() if not process_alive(pid)]:
            print(f"{name}: stopped (pid {waiting.pop(name)}, {time.monotonic() - start:.1f} s)")
        if waiting:
            time.sleep(POLL_INTERVAL_S)  # the poll interval of a deadline-bounded poll
    for name, pid in waiting.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"{name}: still running after {timeout:g} s, sent SIGKILL (pid {pid})")
    for name in pids:
        state.forget(name)


# --- the foreground cluster (`run`) ----------------------------------------------------------------

TAG_COLOURS = (36, 33, 35, 32, 34, 31)  # ANSI: cyan, yellow, magenta, green, blue, red


def render_line(line: str) -> str:
    """A structlog JSON line as ``time level event key=value ...``; any other line unchanged. Pure."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if not isinstance(event, dict) or "event" not in event:
        return line
    stamp = str(event.pop("timestamp", ""))[11:23]
    level = str(event.pop("level", ""))
    name = str(event.pop("event"))
    fields = " ".join(f"{k}={v if isinstance(v, (int, float)) else json.dumps(v)}" for k, v in event.items())
    return f"{stamp} {level:<7} {name} {fields}".rstrip()


def make_tag(name: str, index: int, width: int, colour: bool) -> str:
    tag = f"[{name}]".ljust(width + 2)
    return f"\x1b[{TAG_COLOURS[index % len(TAG_COLOURS)]}m{tag}\x1b[0m" if colour else tag


async def _pump(stream: trio.abc.ReceiveStream, tag: str) -> None:
    """Copy ``stream`` to our stdout line by line, each line rendered and prefixed with ``tag``."""
    pending = b""
    async for chunk in stream:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            print(tag, render_line(line.decode(errors="replace")), flush=True)
    if pending:
        print(tag, render_line(pending.decode(errors="replace")), flush=True)


async def _watch(proc: trio.Process, tag: str) -> None:
    code = await proc.wait()
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    print(tag, how, flush=True)


async def _stop_children(procs: Mapping[str, trio.Process], signals: Any) -> None:
    """SIGTERM every child and wait; SIGKILL them all at the deadline or on a second Ctrl-C."""
    for proc in procs.values():
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    async def kill_on_signal(scope: trio.CancelScope) -> None:
        async for _ in signals:
            print("second signal: killing every node", flush=True)
            scope.cancel()
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(kill_on_signal, nursery.cancel_scope)
        with trio.move_on_after(STOP_TIMEOUT_S):
            for proc in procs.values():
                await proc.wait()
        nursery.cancel_scope.cancel()
    for name, proc in procs.items():
        if proc.returncode is None:
            print(f"{name}: still running, sent SIGKILL", flush=True)
            proc.kill()
            await proc.wait()


async def _serve_foreground(state: StateDir, specs: Sequence[NodeSpec], up_timeout_s: float) -> int:
    colour = sys.stdout.isatty()
    width = max(len(s.name) for s in specs)
    code = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            procs: dict[str, trio.Process] = {}
            for i, spec in enumerate(specs):
                tag = make_tag(spec.name, i, width, colour)
                proc = await trio.lowlevel.open_process(
                    node_command(spec, state.conf(spec.name)),
                    cwd=REPO,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                state.pid_file(spec.name).write_text(f"{proc.pid}\n")
                procs[spec.name] = proc
                assert proc.stdout is not None
                nursery.start_soon(_pump, proc.stdout, tag)
                nursery.start_soon(_watch, proc, tag)

            def exited() -> dict[str, str]:
                return {
                    n: f"exited with code {p.returncode}" for n, p in procs.items() if p.poll() is not None
                }

            async def announce(done: trio.Event) -> None:
                nonlocal code
                try:
                    await trio.to_thread.run_sync(
                        lambda: wait_until_up(state, specs, up_timeout_s, exited), abandon_on_cancel=True
                    )
                except ClusterError as exc:
                    print(f"localcluster: {exc}", file=sys.stderr, flush=True)
                    code = 1
                    done.set()
                    return
                print_status(state, specs)
                print("the cluster is up; Ctrl-C stops it", flush=True)

            async def on_signal(done: trio.Event) -> None:
                async for signum in signals:
                    print(f"{signal.Signals(signum).name}: stopping every node", flush=True)
                    done.set()
                    return

            done = trio.Event()
            nursery.start_soon(announce, done)
            nursery.start_soon(on_signal, done)
            await done.wait()
            await _stop_children(procs, signals)
            nursery.cancel_scope.cancel()
    for spec in specs:
        state.forget(spec.name)
    return code


def run_foreground(state: StateDir, specs: Sequence[NodeSpec], *, timeout: float) -> int:
    """Run every node with prefixed output until Ctrl-C/SIGTERM (or a failed start); the exit code."""
    return trio.run(_serve_foreground, state, specs, timeout)


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

"""The nodes of the local cluster (``localcluster.py``): their configs, their state on disk, and their
processes.

The templates in ``deploy/local/*.toml`` are copied, with every port shifted by ``--port-offset``, into
``<state-dir>/conf/``; the generated files (and ``<state-dir>/state.json``, which records the offset)
are the cluster's description for every later command. A node is *running* when
``<state-dir>/pids/<node>.pid`` names a live, non-zombie process whose command line contains its
generated config path (so a recycled pid is never mistaken for it). Stopping a node polls for its exit
against a deadline; nothing sleeps in the hope that something has happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "deploy" / "local"
ROUTERS = ("rt1", "rt2")
FRONTENDS = ("fe-a1", "fe-a2", "fe-b1", "fe-b2")
# Above the frontend's default drain_timeout_s (10 s): a draining frontend is given time to finish.
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1
LOG_TAIL_LINES = 25


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

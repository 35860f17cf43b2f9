"""Shared plumbing for the benchmarks: servers, Node load clients, percentiles, RSS, cleanup.

Every process a benchmark starts goes through ``spawn`` and is registered, so that normal exit,
an exception, SIGINT or SIGTERM terminate them all (then kill what is left after a grace period).
The Node load clients (``bench/peers/socketio/client.mjs``) speak one JSON object per stdout line
and take commands on stdin; ``NodeClient`` wraps one.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peers" / "socketio"
CLIENT_JS = PEER / "client.mjs"
SOCKETIO_JS = PEER / "server.mjs"
BENCH_KEY = "bench.key:secret"  # dev-mode frontends accept any key

_procs: list[subprocess.Popen[bytes]] = []
_clients: list[NodeClient] = []
_tmpdirs: list[Path] = []


def progress(msg: str) -> None:
    """One progress line on stderr (stdout is reserved for the JSON result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spawn(cmd: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
    """Start a process that is cleaned up when the benchmark exits, however it exits."""
    p = subprocess.Popen(list(cmd), cwd=kw.pop("cwd", ROOT), **kw)
    _procs.append(p)
    return p


def stop(p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup() -> None:
    for p in reversed(_procs):
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5
    for p in _procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    _procs.clear()
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


def _on_signal(signum: int, _frame: object) -> None:
    cleanup()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Terminate every spawned process on exit, SIGINT and SIGTERM."""
    atexit.register(cleanup)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def tempdir(prefix: str, keep: bool = False) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    if not keep:
        _tmpdirs.append(d)
    return d


def ensure_node_modules() -> None:
    """``npm ci`` in bench/peers/socketio once (a fresh clone has no node_modules)."""
    if (PEER / "node_modules" / "socket.io" / "package.json").exists():
        return
    progress("npm ci in bench/peers/socketio")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True, stdout=sys.stderr
    )


# -- measurements -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence (None when empty)."""
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def summary_ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/max of ``values`` (ms), rounded to 0.01 ms."""
    s = sorted(values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "p50": r(percentile(s, 0.5)),
        "p99": r(percentile(s, 0.99)),
        "max": r(s[-1] if s else None),
        "n": len(s),
    }


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set (``VmRSS``) or its peak (``VmHWM``) of ``pid`` in KiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "node": node,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


# -- servers ------------------------------------------------------------------------------------


class Frontend:
    """One ``python -m frontend`` in dev mode on a free port (``extra`` = more TOML lines)."""

    def __init__(self, workdir: Path, extra: str = "", wrap: Sequence[str] = ()) -> None:
        port_file = workdir / "frontend.port"
        cfg = workdir / "frontend.toml"
        cfg.write_text(
            f'dev = true\nport = 0\nport_file = "{port_file}"\nnode_id = "bench1"\n'
            f"outbox_limit = 100000\n{extra}\n"
        )
        self.log = workdir / "frontend.log"
        cmd = [*wrap, sys.executable, "-m", "frontend", "--config", str(cfg), "--log-level", "warning"]
        with open(self.log, "wb") as log:
            self.proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"frontend did not start; see {self.log}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.url = f"ws://127.0.0.1:{self.port}"
        self._pid = self.proc.pid if not wrap else 0

    @property
    def pid(self) -> int:
        """The Python process's pid (under ``py-spy record`` it is the wrapper's child)."""
        if not self._pid:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            deadline = time.monotonic() + 5
            while not self._pid and time.monotonic() < deadline:
                text = kids.read_text().split() if kids.exists() else []
                self._pid = int(text[0]) if text else 0
                time.sleep(0.05)
        return self._pid

    def metrics(self) -> dict[str, float]:
        """``GET /metrics`` parsed to {name: value} (unlabelled samples only)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its profile when the child exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(self.proc)


class OneZoneCluster:
    """``frontends`` frontends (fe-a1, fe-a2, ...) and one router (rt1), all in zone a, dev mode
    (any key), gossip ``local`` on free ports; returns once every daemon's map lists every frontend
    alive. ``frontend_urls`` and ``router_url`` are the clients' addresses, ``procs`` the processes
    by name (logs in ``workdir``)."""

    SECRET = "bench-cluster-secret-0123456789"

    def __init__(self, workdir: Path, frontends: int = 1) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.support.cluster import free_port

        rt_port, rt_gossip = free_port(), free_port()
        ports = [(free_port(), free_port(), free_port()) for _ in range(frontends)]
        seeds = f'["127.0.0.1:{ports[0][1]}"]'
        common = (
            f'dev = true\nhost = "127.0.0.1"\ncluster_secret = "{self.SECRET}"\n'
            f'gossip_profile = "local"\nzone = "a"\nseeds = {seeds}\n'
        )
        self.names = [f"fe-a{i + 1}" for i in range(frontends)]
        configs: list[tuple[str, str, str]] = []
        for name, (port, gossip, peer) in zip(self.names, ports, strict=True):
            configs.append((name, "frontend", common + f'node_id = "{name}"\nport = {port}\n'
                            f'gossip_bind = "127.0.0.1:{gossip}"\npeer_host = "127.0.0.1"\n'
                            f"peer_port = {peer}\noutbox_limit = 100000\n"))
        configs.append(("rt1", "router", common + f'node_id = "rt1"\nport = {rt_port}\n'
                        f'gossip_bind = "127.0.0.1:{rt_gossip}"\n'))
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, module, text in configs:
            cfg = workdir / f"{name}.toml"
            cfg.write_text(text)
            with open(workdir / f"{name}.log", "wb") as log:
                self.procs[name] = spawn(
                    [sys.executable, "-m", module, "--config", str(cfg), "--log-level", "warning"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.frontend_urls = [f"ws://127.0.0.1:{port}" for port, _, _ in ports]
        self.router_url = f"ws://127.0.0.1:{rt_port}"
        self._wait_converged([rt_port] + [port for port, _, _ in ports])

    def _wait_converged(self, admin_ports: list[int]) -> None:
        """Until every daemon's ``/cluster`` lists every frontend alive (homes are placed only then)."""
        import urllib.request

        deadline = time.monotonic() + 60
        pending = list(admin_ports)
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"the cluster did not converge within 60 s; see {self.workdir}/*.log")
            for p in self.procs.values():
                if p.poll() is not None:
                    raise SystemExit(f"a daemon exited; see {self.workdir}/*.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{pending[0]}/cluster", timeout=2) as r:
                    body = json.loads(r.read())
                status = {m.get("node_id"): m.get("status") for m in body.get("members", [])}
                if all(status.get(n) == "alive" for n in self.names) and body.get("ready", True):
                    pending.pop(0)
                    continue
            except (OSError, ValueError):
                pass
            time.sleep(0.2)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far, per daemon."""
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            stop(p)


class SocketIOServer:
    """``node bench/peers/socketio/server.mjs`` on a free port."""

    def __init__(self) -> None:
        self.proc = spawn(["node", str(SOCKETIO_JS)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("socket.io server did not start")
        self.port = int(json.loads(line)["port"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid = self.proc.pid

    def stop(self) -> None:
        stop(self.proc)


# -- Node load clients --------------------------------------------------------------------------


class NodeClient:
    """One ``node client.mjs MODE ...`` process (or ``script``, without a mode when ``mode`` is empty);
    events are its stdout JSON lines."""

    def __init__(self, mode: str, target: str, url: str, script: Path = CLIENT_JS, **opts: Any) -> None:
        args = ["node", str(script), *([mode] if mode else []), "--target", target, "--url", url]
        for k, v in opts.items():
            args += [f"--{k}", str(v)]
        self.proc = spawn(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        _clients.append(self)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put(None)

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        """The next ``{"event": event}`` line; raises SystemExit on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"node client: no {event!r} within {timeout:.0f} s") from None
            if ev is None:
                raise SystemExit(f"node client exited (rc={self.proc.poll()}) before {event!r}")
            if ev.get("event") == event:
                return ev

    def send(self, command: str) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(command.encode() + b"\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass

    def stop(self) -> None:
        stop(self.proc)


def stop_clients() -> None:
    """Stop every Node load client started so far."""
    for c in _clients:
        c.send("stop")
    for c in _clients:
        stop(c.proc, 2)
    _clients.clear()


def split(n: int, parts: int) -> list[int]:
    """``n`` spread over at most ``parts`` non-empty shares."""
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2), flush=True)

"""A real local cluster for integration tests: frontends in two zones and routers, on 127.0.0.1.

``run_cluster(workdir, frontends=..., routers=...)`` allocates ports, writes each
daemon's TOML config, starts the processes, waits until every member is alive
in every daemon's map (``GET /cluster``), and stops everything on exit. Nodes
can be killed (``SIGKILL``), drained (``SIGTERM``) and restarted by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

from tests.support.procs import ADMIN_TOKEN, KEY_NAME, KEY_SECRET, REPO, http_get, render_config

CLUSTER_SECRET = "integration-cluster-secret-0123456789"
# Bounds, not waits: a 2-core machine shared by parallel suites and chaos runs (load 15-20) has taken
# over 20 s to start a frontend (Python imports), which failed runs before they began.
START_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 40.0
STOP_TIMEOUT = 15.0
POLL = 0.05


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free for both TCP and UDP right now (gossip needs both), never handed out twice."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if port in _handed_out:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port


@dataclass
class Node:
    name: str
    role: str  # "frontend" | "router"
    zone: str
    port: int
    gossip_port: int
    config_path: Path
    log_path: Path
    process: trio.Process | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NS]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_port(self) -> int:
        """Where the harness reads /livez and /cluster: the admin listener when the node has one
        (a TLS client port is not plain HTTP), else the client port."""
        return int(self.extra.get("admin_port", self.port))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def get_json(self, path: str) -> Any:
        status, body = await http_get(self.host, self.http_port, path)
        if status != 200:
            raise AssertionError(f"{self.name} {path} answered {status}")
        return json.loads(body)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _open_log(path: Path) -> BinaryIO:
    return open(path, "ab")  # handed to the child process; the caller closes it


class LocalCluster:
    def __init__(self, workdir: Path, nodes: list[Node]) -> None:
        self.workdir = workdir
        self.nodes = {n.name: n for n in nodes}

    @property
    def frontends(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "frontend"]

    @property
    def routers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "router"]

    def router_url(self, i: int = 0) -> str:
        return self.routers[i].url

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes.values() if n.port == port)

    async def start(self, name: str) -> None:
        node = self.nodes[name]
        assert not node.running, f"{name} is already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUITY_")}
        env["PYTHONUNBUFFERED"] = "1"
        module = "frontend" if node.role == "frontend" else "router"
        log = _open_log(node.log_path)
        try:
            node.process = await trio.lowlevel.open_process(
                [*node.prefix, sys.executable, "-m", module, "--config", str(node.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
                env=env,
            )
        finally:
            log.close()
        with trio.fail_after(START_TIMEOUT):
            while True:
                if node.process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {node.process.returncode}:\n{node.log_text()[-4000:]}"
                    )
                try:
                    status, _ = await http_get(node.host, node.http_port, "/livez")
                    if status == 200:
                        return
                except (OSError, ValueError, IndexError, trio.BrokenResourceError):
                    pass
                await trio.sleep(POLL)

    async def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        node = self.nodes[name]
        proc = node.process
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc is not None and proc.returncode is not None else 0
        proc.send_signal(sig)
        with trio.move_on_after(STOP_TIMEOUT):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        assert proc.returncode is not None
        return proc.returncode

    async def kill(self, name: str) -> None:
        await self.stop(name, signal.SIGKILL)

    async def members(self, name: str) -> dict[str, dict[str, Any]]:
        body = await self.nodes[name].get_json("/cluster")
        members = body["members"] if isinstance(body, dict) else body
        return {m["node_id"]: m for m in members}

    async def homes(self) -> dict[str, str]:
        """channel -> the running frontend that is its home (each frontend's ``/cluster``)."""
        out = {}
        for fe in self.frontends:
            if fe.running:
                for ch in (await fe.get_json("/cluster"))["channels"]["home"]:
                    out[ch] = fe.name
        return out

    async def wait_converged(self, *, dead: Iterable[str] = (), within: float = CONVERGE_TIMEOUT) -> None:
        """Until every running node sees every running node alive and each of ``dead`` not alive."""
        dead = set(dead)
        running = {n.name for n in self.nodes.values() if n.running and n.name not in dead}
        with trio.fail_after(within):
            while True:
                ok = True
                for name in running:
                    try:
                        seen = await self.members(name)
                    except (OSError, AssertionError, ValueError):
                        ok = False
                        break
                    alive = {n for n, m in seen.items() if m["status"] in ("alive", "suspect")}
                    if not running <= alive or alive & dead:
                        ok = False
                        break
                if ok:
                    return
                await trio.sleep(POLL)

    async def owner_of(self, connection_id: str) -> str | None:
        """Which frontend holds ``connection_id`` live (from each node's metrics-free /debug view)."""
        for fe in self.frontends:
            if not fe.running:
                continue
            body = await fe.get_json(f"/debug/connections/{connection_id}")
            if body.get("state") in ("active", "detached"):
                return fe.name
        return None

    async def home_of(self, channel: str) -> str:
        """The running frontend that is home of ``channel`` (its /cluster view); AssertionError if none."""
        for fe in self.frontends:
            if fe.running and channel in (await fe.get_json("/cluster"))["channels"]["home"]:
                return fe.name
        raise AssertionError(f"no running frontend is home of {channel}")


# The gossip profile of every daemon a test cluster starts: ``local`` (fast timings for one machine);
# TEST_GOSSIP_PROFILE=lan measures a test with deploy/k8s's timings (docs/architecture.md, "Zone quorum").
GOSSIP_PROFILE = os.environ.get("TEST_GOSSIP_PROFILE", "local")


def _frontend_config(node: Node, seeds: list[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "node_id": node.name,
        "zone": node.zone,
        "host": node.host,
        "peer_host": node.host,
        "port": node.port,
        "cluster_secret": CLUSTER_SECRET,
        "gossip_bind": f"{node.host}:{node.gossip_port}",
        "seeds": seeds,
        "gossip_profile": GOSSIP_PROFILE,
        "peer_port": node.extra["peer_port"],
        "drain_timeout_s": 8.0,
        **_admin_token(node.host),
        **overrides,
    }


def _admin_token(host: str) -> dict[str, str]:
    """A daemon listening beyond loopback must protect its admin surfaces (kernel.config)."""
    return {} if host.startswith("127.") else {"admin_token": ADMIN_TOKEN}


@asynccontextmanager
async def run_cluster(
    workdir: Path,
    *,
    frontends: Iterable[tuple[str, str]] = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"), ("fe-b2", "b")),
    routers: Iterable[tuple[str, str]] = (("rt1", "a"),),
    spare: Iterable[tuple[str, str]] = (),
    host: str = "127.0.0.1",
    placed: Mapping[str, tuple[str, list[str]]] | None = None,
    router_overrides: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[LocalCluster]:
    """Start the cluster (``spare`` frontends are configured but not started) and yield it converged.

    ``overrides`` are frontend config fields; ``router_overrides`` router ones (e.g. ``dev=True``).

    Every daemon binds ``host``, except those in ``placed`` (name -> (host, command prefix)), which
    run elsewhere, e.g. in a network namespace (``tests/support/netns.py``).
    """
    await trio.Path(workdir).mkdir(parents=True, exist_ok=True)
    nodes: list[Node] = []
    for name, zone in [*frontends, *spare]:
        nodes.append(
            Node(
                name,
                "frontend",
                zone,
                free_port(),
                free_port(),
                workdir / f"{name}.toml",
                workdir / f"{name}.log",
                extra={"peer_port": free_port()},
            )
        )
    for name, zone in routers:
        nodes.append(
            Node(
                name,
                "router",
                zone,
                free_port(),
                free_port(),
                workdir / f"{name}.toml",
                workdir / f"{name}.log",
            )
        )
    for n in nodes:
        n.host, n.prefix = (placed or {}).get(n.name, (host, []))
    fronts = [n for n in nodes if n.role == "frontend"]
    seeds = [f"{n.host}:{n.gossip_port}" for n in fronts[:2]]
    keys = {KEY_NAME: {"secret": KEY_SECRET, "capability": {"*": ["*"]}, "revocable_tokens": True}}
    for n in nodes:
        if n.role == "frontend":
            n.config_path.write_text(render_config(_frontend_config(n, seeds, overrides), keys))
        else:
            cfg = {
                "node_id": n.name,
                "zone": n.zone,
                "host": n.host,
                "port": n.port,
                "cluster_secret": CLUSTER_SECRET,
                "gossip_bind": f"{n.host}:{n.gossip_port}",
                "seeds": seeds,
                "gossip_profile": GOSSIP_PROFILE,
                **_admin_token(n.host),
                **(router_overrides or {}),
            }
            if "tls_cert_file" in cfg:  # the harness speaks plain HTTP to its admin listener
                n.extra["admin_port"] = cfg["admin_port"] = free_port()
            n.config_path.write_text(render_config(cfg, {}))
    cluster = LocalCluster(workdir, nodes)
    spare_names = {name for name, _ in spare}
    try:
        async with trio.open_nursery() as nursery:
            for n in nodes:
                if n.name not in spare_names:
                    nursery.start_soon(cluster.start, n.name)
        await cluster.wait_converged()
        yield cluster
    except BaseException:
        for n in nodes:
            print(f"--- {n.name} log (tail) ---\n{n.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for n in nodes:
                    nursery.start_soon(cluster.kill, n.name)

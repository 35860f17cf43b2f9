"""Processes and a fault proxy for the interop tests.

- ``run_frontend``: a real ``python -m frontend`` subprocess on port 0 with a
  TOML config; yields once it has written its bound port.
- ``Tunnel``: a TCP proxy in front of it whose ``cut(duration)`` drops every
  live socket and, for ``duration`` seconds, closes new ones at once (the
  client sees a fast failure, never a hang; ably-js would otherwise run its
  internet connectivity check after 4 s and fail offline).
- ``Script``: a Node or Python SDK script as a subprocess speaking JSON lines:
  it prints events on stdout and reads commands on stdin.

TODO: switch to ``tests/support`` (tunnel.py, procs.py) once it lands.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KEY_NAME = "app.key"
KEY_SECRET = "interop-key-secret-0123456789abcdefghijklmnop"
API_KEY = f"{KEY_NAME}:{KEY_SECRET}"
NODE = "node"


# ---------------------------------------------------------------------------
# Frontend process


@dataclass
class Frontend:
    port: int
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # handed to a subprocess; closed once it has its own copy


_serial = itertools.count()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


@asynccontextmanager
async def run_frontend(tmp: Path, **settings: Any) -> AsyncIterator[Frontend]:
    """Run ``python -m frontend`` with one API key (full capability) on a free port."""
    port_file = tmp / "frontend.port"
    log_path = tmp / "frontend.log"
    conf = {
        "node_id": "interop1",
        "host": "127.0.0.1",
        "port_file": str(port_file),
        "cluster_secret": "interop-cluster-secret-0123456789",
        **settings,
    }
    lines = [f"{k} = {_toml_value(v)}" for k, v in conf.items()]
    lines += [f'[keys."{KEY_NAME}"]', f"secret = {_toml_value(KEY_SECRET)}", 'capability = { "*" = ["*"] }']
    config_path = tmp / "frontend.toml"
    config_path.write_text("\n".join(lines) + "\n")
    with _open_log(log_path) as log_file:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "frontend", "--config", str(config_path), "--port", "0"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
        try:
            with trio.fail_after(15):
                while not port_file.exists() or not port_file.read_text().strip():
                    if proc.poll() is not None:
                        raise RuntimeError(f"frontend exited early:\n{log_path.read_text()}")
                    await trio.sleep(0.02)  # polled with a deadline
            yield Frontend(port=int(port_file.read_text()), log_path=log_path)
        finally:
            await _stop(proc, signal.SIGTERM)


async def _stop(proc: trio.Process, sig: int) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
        with trio.move_on_after(5):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


# ---------------------------------------------------------------------------
# Fault proxy


class Tunnel:
    """A TCP proxy to ``target_port`` whose ``cut`` drops and refuses connections."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._links: set[trio.CancelScope] = set()
        self._down_until = 0.0
        self._blackhole = False

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    @property
    def down(self) -> bool:
        return trio.current_time() < self._down_until

    def blackhole(self) -> None:
        """Silently drop server-to-client bytes on live links (a half-dead link) until the next cut."""
        self._blackhole = True

    async def cut(self, duration: float) -> None:
        """Drop every live connection now and refuse new ones for ``duration`` seconds."""
        self._down_until = trio.current_time() + duration
        self._blackhole = False
        for scope in list(self._links):
            scope.cancel()
        await trio.sleep(duration)  # the cut itself

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.down:
            await trio.aclose_forcefully(client)
            return
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        try:
            with trio.CancelScope() as scope:
                self._links.add(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope, False)
                    nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope, True)
        finally:
            self._links.discard(scope)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(upstream)

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, done: trio.CancelScope, downstream: bool
    ) -> None:
        try:
            while data := await src.receive_some(65536):
                if downstream and self._blackhole:
                    continue
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        done.cancel()


# ---------------------------------------------------------------------------
# SDK scripts


@dataclass
class Script:
    """A subprocess that prints JSON events, one per line, and reads JSON commands."""

    name: str
    proc: trio.Process
    stderr_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _send: trio.MemorySendChannel[dict[str, Any]] | None = None
    _recv: trio.MemoryReceiveChannel[dict[str, Any]] | None = None

    async def next_event(self) -> dict[str, Any]:
        assert self._recv is not None
        try:
            ev = await self._recv.receive()
        except trio.EndOfChannel:
            raise AssertionError(
                f"{self.name} exited (rc={self.proc.returncode}) before the expected event; "
                f"events so far: {self.events}\nstderr:\n{self.stderr()}"
            ) from None
        if ev.get("event") == "fatal":
            raise AssertionError(f"{self.name} failed: {ev}\nstderr:\n{self.stderr()}")
        return ev

    async def expect(self, event: str) -> dict[str, Any]:
        """Wait for the next event named ``event`` (others are kept in ``events``)."""
        while True:
            ev = await self.next_event()
            if ev.get("event") == event:
                return ev

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all((json.dumps(command) + "\n").encode())

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def _read(self) -> None:
        assert self.proc.stdout is not None and self._send is not None
        buf = b""
        async with self._send:
            async for chunk in self.proc.stdout:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        ev = {"event": "stdout", "text": line.decode(errors="replace")}
                    self.events.append(ev)
                    await self._send.send(ev)


@asynccontextmanager
async def run_script(tmp: Path, argv: list[str], config: dict[str, Any]) -> AsyncIterator[Script]:
    """Start ``argv`` with ``config`` as JSON in argv[-1]; kill it when the block ends."""
    name = Path(argv[-1]).stem
    stderr_path = tmp / f"{name}-{next(_serial)}.stderr"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with _open_log(stderr_path) as err:
        proc = await trio.lowlevel.open_process(
            [*argv, json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    send, recv = trio.open_memory_channel[dict[str, Any]](1000)
    script = Script(name=name, proc=proc, stderr_path=stderr_path, _send=send, _recv=recv)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(script._read)
            try:
                yield script
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
            if proc.stdin is not None:
                await trio.aclose_forcefully(proc.stdin)
            if proc.stdout is not None:
                await trio.aclose_forcefully(proc.stdout)


def node_script(tmp: Path, script: str, config: dict[str, Any]) -> Any:
    return run_script(tmp, [NODE, str(HERE / "js" / script)], config)


def python_script(tmp: Path, script: str, config: dict[str, Any]) -> Any:
    return run_script(tmp, [sys.executable, str(HERE / "py" / script)], config)


async def scrape_metrics(port: int) -> dict[str, float]:
    """``GET /metrics`` from a frontend, as ``{"name{labels}": value}``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := await stream.receive_some(65536):
            body += chunk
    text = body.partition(b"\r\n\r\n")[2].decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def make_jwt(*, client_id: str | None, capability: dict[str, list[str]], ttl_s: int = 3600) -> str:
    """An Ably JWT: HS256 by the key secret, ``kid`` = key name."""
    import time

    import jwt

    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "exp": int(time.time()) + ttl_s,
        "x-ably-capability": json.dumps(capability),
    }
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    return jwt.encode(claims, KEY_SECRET, algorithm="HS256", headers={"kid": KEY_NAME})

"""Harness for the interop tests: real SDKs in subprocesses against a real frontend.

- ``run_frontend``: ``tests.support.procs.run_frontend`` with this suite's API key
  (its secret is long enough for PyJWT's HS256 key-length check).
- ``start_tunnel`` / ``cut``: ``tests.support.tunnel.Tunnel`` in front of it. A cut
  resets live sockets and new ones for a while, so the SDK sees a fast failure,
  never a hang (ably-js would run its internet connectivity check after 4 s and
  fail offline).
- ``Script``: a Node or Python SDK script as a subprocess speaking JSON lines:
  it prints events on stdout, one per line.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

from tests.support import procs
from tests.support.procs import FrontendProcess
from tests.support.tunnel import Tunnel

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KEY_NAME = "app.key"
KEY_SECRET = "interop-key-secret-0123456789abcdefghijklmnop"
API_KEY = f"{KEY_NAME}:{KEY_SECRET}"
NODE = "node"


@asynccontextmanager
async def run_frontend(tmp: Path, **config: Any) -> AsyncIterator[FrontendProcess]:
    """A real ``python -m frontend`` (tests.support.procs) with one full-capability API key."""
    keys = {KEY_NAME: {"secret": KEY_SECRET, "capability": {"*": ["*"]}}}
    async with procs.run_frontend(tmp / "frontend", keys=keys, **config) as fe:
        yield fe


async def start_tunnel(nursery: trio.Nursery, port: int) -> Tunnel:
    tunnel = Tunnel("127.0.0.1", port)
    await nursery.start(tunnel.serve)
    return tunnel


async def cut(tunnel: Tunnel, duration: float) -> None:
    """Drop every connection through ``tunnel`` and refuse new ones for ``duration`` seconds."""
    tunnel.cut(duration)
    await trio.sleep(duration)  # the cut itself


# ---------------------------------------------------------------------------
# SDK scripts

_serial = itertools.count()


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # handed to the subprocess; closed once it has its own copy


@dataclass
class Script:
    """A subprocess that prints JSON events, one per line, on stdout."""

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

    async def command(self, cmd: dict[str, Any]) -> None:
        """Write one JSON line to the script's stdin (scripts started with ``stdin=True``)."""
        assert self.proc.stdin is not None, "start the script with stdin=True"
        await self.proc.stdin.send_all(json.dumps(cmd).encode() + b"\n")

    async def expect(self, event: str) -> dict[str, Any]:
        """Wait for the next event named ``event`` (others are kept in ``events``)."""
        while True:
            ev = await self.next_event()
            if ev.get("event") == event:
                return ev

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
async def run_script(
    tmp: Path,
    argv: list[str],
    config: dict[str, Any],
    env: dict[str, str] | None = None,
    *,
    stdin: bool = False,
) -> AsyncIterator[Script]:
    """Start ``argv`` with ``config`` as JSON in argv[-1] (and ``env`` added to the environment);
    kill it when the block ends. With ``stdin``, the script reads commands (``Script.command``)."""
    name = Path(argv[-1]).stem
    stderr_path = tmp / f"{name}-{next(_serial)}.stderr"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with _open_log(stderr_path) as err:
        proc = await trio.lowlevel.open_process(
            [*argv, json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
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
            if proc.stdout is not None:
                await trio.aclose_forcefully(proc.stdout)


def node_script(
    tmp: Path, script: str, config: dict[str, Any], env: dict[str, str] | None = None, *, stdin: bool = False
) -> Any:
    return run_script(tmp, [NODE, str(HERE / "js" / script)], config, env, stdin=stdin)


def python_script(tmp: Path, script: str, config: dict[str, Any]) -> Any:
    return run_script(tmp, [sys.executable, str(HERE / "py" / script)], config)


def make_jwt(
    *, client_id: str | None, capability: dict[str, list[str]], ttl_s: int = 3600, secret: str = KEY_SECRET
) -> str:
    """An Ably JWT: HS256 by the key secret (a cluster's: tests.support.procs), ``kid`` = key name."""
    import time

    import jwt

    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "exp": int(time.time()) + ttl_s,
        "x-ably-capability": json.dumps(capability),
    }
    if client_id is not None:
        claims["x-ably-clientId"] = client_id
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": KEY_NAME})

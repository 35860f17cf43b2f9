"""Run a real ``python -m frontend`` process for integration tests.

``run_frontend(workdir, **config)`` writes a TOML config (the FrontendConfig
field names, plus one API key), starts the daemon with ``--port 0``, waits for
the port file and then for ``GET /health`` == 200, and on exit stops it with
SIGTERM (then SIGKILL). If the body raises, the tail of the daemon's log is
printed so that pytest shows it with the failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import trio

REPO = Path(__file__).resolve().parents[2]
KEY_NAME = "app.key"
KEY_SECRET = "integration-secret"
API_KEY = f"{KEY_NAME}:{KEY_SECRET}"
# Sent by http_get to every daemon; configured as admin_token where the harness needs one (a daemon
# listening beyond loopback, e.g. in a network namespace), ignored by the others.
ADMIN_TOKEN = "integration-admin-token-0123456789"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

DEFAULT_CONFIG: dict[str, Any] = {
    "node_id": "it1",
    "zone": "a",
    "cluster_secret": "integration-cluster-secret-0123456789",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(config: Mapping[str, Any], keys: Mapping[str, Mapping[str, Any]]) -> str:
    """A FrontendConfig TOML document: scalar fields, then ``[keys."name"]`` tables."""
    lines = [f"{name} = {_toml_value(value)}" for name, value in config.items()]
    for name, spec in keys.items():
        lines.append(f"\n[keys.{json.dumps(name)}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec.items())
    return "\n".join(lines) + "\n"


async def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET; returns ``(status, body)``. Raises OSError if unreachable, ValueError
    if the answer is not HTTP (e.g. empty: the server was killed mid-request)."""
    stream = await trio.open_tcp_stream(host, port)
    chunks = []
    try:
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                                  f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode())
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    except trio.BrokenResourceError as exc:  # reset mid-request (the server was killed): unreachable
        raise ConnectionResetError(f"{host}:{port}{path}: {exc}") from exc
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2:  # the server closed before answering (killed mid-request)
        raise ValueError(f"no HTTP status line from {host}:{port}{path}: {raw[:80]!r}")
    status = int(parts[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → ``{"name{labels}": value}`` (labels verbatim)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


@dataclass
class FrontendProcess:
    """A running frontend daemon."""

    process: trio.Process
    port: int
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return _read(self.log_path)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await http_get("127.0.0.1", self.port, path)

    async def metrics(self) -> dict[str, float]:
        status, body = await self.get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    async def stop(self, *, kill: bool = False) -> int:
        """SIGTERM (or SIGKILL) and wait; escalates to SIGKILL after STOP_TIMEOUT. Returns the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        code = self.process.returncode
        assert code is not None
        return code


async def _wait_for_port(process: trio.Process, port_file: Path, log_path: Path) -> int:
    while True:
        if process.returncode is not None or process.poll() is not None:
            raise RuntimeError(f"frontend exited with {process.returncode}:\n{_read(log_path)[-4000:]}")
        text = _read(port_file)
        if text.endswith("\n") and text.split()[0].isdigit():  # the client port, then any admin port
            return int(text.split()[0])
        await trio.sleep(0.02)


async def _wait_healthy(port: int) -> None:
    while True:
        try:
            status, _ = await http_get("127.0.0.1", port, "/health")
            if status == 200:
                return
        except (OSError, ValueError, IndexError):
            pass
        await trio.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")  # handed to the child process; the caller closes it


def _prepare(
    workdir: Path, config: Mapping[str, Any], keys: Mapping[str, Mapping[str, Any]] | None
) -> tuple[Path, Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "frontend.port"
    port_file.unlink(missing_ok=True)
    merged = {**DEFAULT_CONFIG, **config, "port_file": str(port_file)}
    keys = keys if keys is not None else {KEY_NAME: {"secret": KEY_SECRET, "capability": {"*": ["*"]}}}
    config_path = workdir / "frontend.toml"
    config_path.write_text(render_config(merged, keys))
    return port_file, workdir / "frontend.log", config_path


@asynccontextmanager
async def run_frontend(
    workdir: Path, *, keys: Mapping[str, Mapping[str, Any]] | None = None, **config: Any
) -> AsyncIterator[FrontendProcess]:
    """Start a frontend with ``config`` (FrontendConfig fields) and yield it once healthy."""
    port_file, log_path, config_path = _prepare(workdir, config, keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUITY_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = _open_log(log_path)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "frontend", "--config", str(config_path), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=env,
        )
    finally:
        log.close()
    fe: FrontendProcess | None = None
    try:
        with trio.fail_after(START_TIMEOUT):
            port = await _wait_for_port(process, port_file, log_path)
            ports = _read(port_file).split()
            # With an admin listener (plain HTTP even when the client port is TLS), ask it.
            await _wait_healthy(int(ports[1]) if len(ports) > 1 else port)
        fe = FrontendProcess(process=process, port=port, config_path=config_path, log_path=log_path)
        yield fe
    except BaseException:
        print(f"--- frontend log ({log_path}) ---\n{_read(log_path)[-8000:]}", file=sys.stderr)
        raise
    finally:
        with trio.CancelScope(shield=True):
            if fe is not None:
                await fe.stop()
            elif process.returncode is None:
                process.kill()
                await process.wait()

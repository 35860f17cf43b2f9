"""The failover bench's load (``bench/failover.py``): the publisher, in the bench's own process, and the
subscribers' worker processes (``bench/failover_worker.py``), driven over their stdin and stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import continuity as client
from tests.support.procs import API_KEY
from tests.support.streams import FAST_BACKOFF

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "failover_worker.py"
PUBLISH_WINDOW = 64  # publishes in flight at once


@dataclass
class Publish:
    n: int
    channel: str
    sent_t: float
    ack_t: float | None = None
    serial: str | None = None
    error: str | None = None


@dataclass
class Publisher:
    """Publishes ``{"n": i}`` at ``rate``/s, message i on channel i % len(channels), a window in flight."""

    channels: list[str]
    rate: float
    records: list[Publish] = field(default_factory=list)
    stop: trio.Event = field(default_factory=trio.Event)
    server: str = ""

    async def run(self, url: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with client.connect(url, key=API_KEY, backoff=FAST_BACKOFF, echo=False) as conn:
            self.server = str(conn.details.get("serverId", "")).removeprefix("continuity.")
            chans = [conn.channel(c) for c in self.channels]
            for ch in chans:
                await ch.attach()
            task_status.started()
            window = trio.Semaphore(PUBLISH_WINDOW)
            async with trio.open_nursery() as nursery:
                start = trio.current_time()
                n = 0
                while not self.stop.is_set():
                    with trio.move_on_at(start + n / self.rate):
                        await self.stop.wait()
                    if self.stop.is_set():
                        break
                    await window.acquire()
                    rec = Publish(n=n, channel=self.channels[n % len(chans)], sent_t=time.time())
                    self.records.append(rec)
                    nursery.start_soon(self._one, chans[n % len(chans)], rec, window)
                    n += 1

    async def _one(self, ch: client.Channel, rec: Publish, window: trio.Semaphore) -> None:
        try:
            [serial] = await ch.publish("n", {"n": rec.n, "t": rec.sent_t})
            rec.serial, rec.ack_t = serial, time.time()
        except (client.ClientError, trio.TooSlowError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            window.release()

    def acked(self, channel: str) -> list[Publish]:
        return [r for r in self.records if r.channel == channel and r.serial is not None]


# ---------------------------------------------------------------------------------------------- workers


class WorkerProc:
    """A ``failover_worker.py`` subprocess: commands as JSON lines on stdin, reports on stdout."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.ready: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.progress: dict[str, Any] | None = None
        self.got_ready = trio.Event()
        self.got_result = trio.Event()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while chunk := await self.proc.stdout.receive_some(1 << 20):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["type"] == "ready":
                    self.ready = msg
                    self.got_ready.set()
                elif msg["type"] == "progress":
                    self.progress = msg
                elif msg["type"] == "result":
                    self.result = msg
                    self.got_result.set()

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(obj).encode() + b"\n")


async def start_workers(
    nursery: trio.Nursery, workdir: Path, url: str, args: argparse.Namespace
) -> list[WorkerProc]:
    base, extra = divmod(args.clients, args.procs)
    per = [base + (1 if i < extra else 0) for i in range(args.procs)]
    workers, first = [], 0
    for i, count in enumerate(per):
        if count == 0:
            continue
        err = open(workdir / f"worker{i}.err", "ab")  # noqa: ASYNC230 (handed to the child)
        try:
            proc = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    str(WORKER),
                    "--url",
                    url,
                    "--count",
                    str(count),
                    "--first",
                    str(first),
                    "--channels",
                    str(args.channels),
                    "--drain",
                    str(args.drain),
                    "--seed",
                    str(args.seed),
                    *(["--dump-times"] if args.keep else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=str(ROOT),
            )
        finally:
            err.close()
        w = WorkerProc(proc)
        workers.append(w)
        nursery.start_soon(w.read)
        first += count
    return workers


async def stop_workers(workers: list[WorkerProc]) -> None:
    with trio.CancelScope(shield=True):
        for w in workers:
            if w.proc.returncode is None:
                w.proc.kill()
            with trio.move_on_after(5):
                await w.proc.wait()

"""Real processes: five `python -m gossip` members on UDP 127.0.0.1 with the local profile; `kill -9`
one, and every survivor must mark it dead within the bound given by the profile's formulas."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from gossip import GossipConfig

ROOT = Path(__file__).resolve().parents[2]
N = 5


class Proc:
    """One CLI member and what its stdout has told us so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.name = ""
        self.address = ""
        self.alive: set[str] = set()
        self.dead_at: dict[str, float] = {}
        self._buffer = b""

    async def read_line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(4096)
            if not chunk:
                raise EOFError("member exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def follow(self, changed: trio.MemorySendChannel[None]) -> None:
        """Track membership from the printed changes, and signal each change."""
        while True:
            try:
                kind, name, *_ = (await self.read_line()).split()
            except EOFError:
                return  # the member was killed
            if kind in ("joined", "alive"):
                self.alive.add(name)
            elif kind in ("suspect", "dead", "left"):
                self.alive.discard(name)
                if kind == "dead":
                    self.dead_at.setdefault(name, trio.current_time())
            await changed.send(None)


async def start(seed: str | None) -> Proc:
    cmd = [
        sys.executable,
        "-m",
        "gossip",
        "--bind",
        "127.0.0.1:0",
        "--profile",
        "local",
        "--secret",
        "s3cret",
    ]
    if seed:
        cmd += ["--seed", seed]
    process = await trio.lowlevel.open_process(cmd, cwd=str(ROOT), stdout=subprocess.PIPE)
    proc = Proc(process)
    kind, proc.name, proc.address = (await proc.read_line()).split()
    assert kind == "listening"
    return proc


@pytest.mark.integration
async def test_kill_9_is_detected_by_every_survivor_within_the_profile_bound() -> None:
    config = GossipConfig.local()
    bound = config.detection_bound(N)
    procs: list[Proc] = []
    try:
        with trio.fail_after(30 + bound):
            procs.append(await start(None))
            for _ in range(N - 1):
                procs.append(await start(procs[0].address))
            changed_send, changed = trio.open_memory_channel[None](1000)
            async with trio.open_nursery() as nursery:
                for p in procs:
                    nursery.start_soon(p.follow, changed_send)
                names = {p.name for p in procs}
                while not all(p.alive == names - {p.name} for p in procs):
                    await changed.receive()
                victim, survivors = procs[-1], procs[:-1]
                victim.process.send_signal(signal.SIGKILL)
                killed_at = trio.current_time()
                while not all(victim.name in p.dead_at for p in survivors):
                    await changed.receive()
                nursery.cancel_scope.cancel()
        took = [p.dead_at[victim.name] - killed_at for p in survivors]
        print(f"detected after {[round(t, 2) for t in took]} s; bound {bound:.2f} s")
        assert max(took) <= bound
    finally:
        for p in procs:
            if p.process.returncode is None:
                p.process.kill()
            await p.process.wait()

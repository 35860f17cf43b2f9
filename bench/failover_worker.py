"""Subscriber worker for ``bench/failover.py``: many SDK clients in one process, driven over stdin/stdout.

    python bench/failover_worker.py --url ws://127.0.0.1:PORT --count 50 --channels 1 --first 0

Opens ``--count`` connections (client SDK, through the router), subscriber ``i``
(numbered from ``--first``) on channel ``i % channels``, and records every
message's serial with its first receipt time (``time.time()``, comparable across
the processes of one machine) and every connection state change with its time.

Speaks JSON lines. Commands on stdin:

- ``{"cmd": "kill", "t": T, "victim": NAME}``: the victim frontend was killed at T.
- ``{"cmd": "need", "serials": {channel: [serial, ...]}}``: what "caught up" means
  (see ``failover.py``); the worker then reports ``progress`` every 0.2 s.
- ``{"cmd": "stop", "last": {channel: serial}}``: wait (at most ``--drain`` s) until
  every live subscriber has ``last``, print the ``result`` and exit.

Lines on stdout: ``ready`` (per subscriber: id, server, attach serial), ``progress``
and ``result`` (per subscriber: ids, received serial ranges, duplicates,
reorders, reconnect and caught-up times).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import continuity as client  # noqa: E402
from tests.support.procs import API_KEY  # noqa: E402
from tests.support.streams import FAST_BACKOFF  # noqa: E402

CHANNEL_PREFIX = "bench:failover:"
SEQ_BITS = 40  # a serial "<epoch>:<seq>" is keyed as epoch_index << SEQ_BITS | seq
PROGRESS_INTERVAL = 0.2
CONNECT_CONCURRENCY = 16


class Epochs:
    """Interns channel epochs so that a serial becomes one int key, ordered within an epoch."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def key(self, serial: str) -> int:
        epoch, _, seq = serial.rpartition(":")
        idx = self.index.get(epoch)
        if idx is None:
            idx = self.index[epoch] = len(self.names)
            self.names.append(epoch)
        return idx << SEQ_BITS | int(seq)

    def serial(self, key: int) -> str:
        return f"{self.names[key >> SEQ_BITS]}:{key & ((1 << SEQ_BITS) - 1)}"


EPOCHS = Epochs()


def server_of(conn: client.Connection) -> str:
    """The frontend a connection is on, from CONNECTED's serverId (``continuity.<node_id>``)."""
    return str(conn.details.get("serverId", "")).removeprefix("continuity.")


class Sub:
    """One subscriber's record: what it received when, and its connection's state changes."""

    def __init__(self, index: int, channel: str) -> None:
        self.index = index
        self.channel = channel
        self.first_id: str | None = None
        self.attach: int | None = None  # key of the channel serial at attach, None if the channel was empty
        self.first_seen: dict[int, float] = {}  # serial key -> first receipt time
        self.last: int = -1
        self.dupes = 0
        self.reorders = 0
        self.epoch_changes = 0
        # (time, state, connection id, server, resumed)
        self.events: list[tuple[float, str, str | None, str, bool]] = []
        self.error: str | None = None
        self.attached = False
        self.caught: float | None = None  # caught_up_at(needed), once it is known (it never changes then)

    def on_message(self, key: int, now: float) -> None:
        if key in self.first_seen:
            self.dupes += 1
            return
        self.first_seen[key] = now
        if self.last >= 0:
            if key >> SEQ_BITS != self.last >> SEQ_BITS:
                self.epoch_changes += 1
            elif key != self.last + 1:
                self.reorders += 1  # a gap or a step back, both break in-order delivery
        self.last = key

    def server_at(self, t: float) -> str | None:
        server = None
        for when, state, _, srv, _ in self.events:
            if when > t:
                break
            if state == "connected":
                server = srv
        return server

    def reconnect_after(self, t: float) -> tuple[float, str | None] | None:
        """The first CONNECTED after ``t``: (time, connection id), or None."""
        for when, state, cid, _, _ in self.events:
            if when > t and state == "connected":
                return when, cid
        return None

    def connecting_after(self, t: float) -> float | None:
        """When the client SDK first started a connect attempt after ``t`` (its backoff over), or None."""
        return next((when for when, st, _, _, _ in self.events if when > t and st == "connecting"), None)

    def disconnected_after(self, t: float) -> float | None:
        """When the connection first left CONNECTED after ``t``, or None."""
        return next((when for when, state, _, _, _ in self.events if when > t and state != "connected"), None)

    def caught_up_at(self, needed: list[int]) -> float | None:
        """When every needed key after the attach point had arrived (max first receipt), or None.
        Remembered once known: the progress report asks every 0.2 s, for every subscriber, and the
        scan over ``needed`` took ~9% of a worker's CPU while its clients were reconnecting."""
        if self.caught is None:
            self.caught = self._caught_up_at(needed)
        return self.caught

    def _caught_up_at(self, needed: list[int]) -> float | None:
        latest = 0.0
        for key in needed:
            if self.attach is not None and key >> SEQ_BITS == self.attach >> SEQ_BITS and key <= self.attach:
                continue
            seen = self.first_seen.get(key)
            if seen is None:
                return None
            latest = max(latest, seen)
        return latest

    def ranges(self) -> dict[str, list[list[int]]]:
        """Received serials as ``{epoch: [[first_seq, last_seq], ...]}``."""
        out: dict[str, list[list[int]]] = {}
        for key in sorted(self.first_seen):
            epoch, seq = EPOCHS.names[key >> SEQ_BITS], key & ((1 << SEQ_BITS) - 1)
            runs = out.setdefault(epoch, [])
            if runs and runs[-1][1] + 1 == seq:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        return out


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, url: str, subs: list[Sub], seed: int, dump_times: bool) -> None:
        self.url = url
        self.dump_times = dump_times
        self.latencies: list[float] = []  # publish -> receipt, s, for messages received before the kill
        self.seed = seed
        self.subs = subs
        self.kill_t: float | None = None
        self.victim: str | None = None
        self.needed: dict[str, list[int]] | None = None
        self.stop = trio.Event()

    async def run_sub(self, sub: Sub, gate: trio.Semaphore, ready: trio.Event) -> None:
        await gate.acquire()
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                gate.release()

        try:
            async with client.connect(
                self.url,
                key=API_KEY,
                backoff=FAST_BACKOFF,
                rng=random.Random(self.seed * 1_000_003 + sub.index),
            ) as conn:
                await self.follow(sub, conn, ready, release)
        except* (client.ClientError, trio.TooSlowError, OSError) as group:
            # The SDK's nurseries wrap errors in groups: one failed subscriber (e.g. an ATTACH that
            # timed out on an overloaded machine) is recorded, never fatal to the other clients.
            exc: BaseException = group
            while isinstance(exc, BaseExceptionGroup):
                exc = exc.exceptions[0]
            sub.error = f"{type(exc).__name__}: {exc}"
        finally:
            release()
            ready.set()

    async def follow(
        self, sub: Sub, conn: client.Connection, ready: trio.Event, release: Callable[[], None]
    ) -> None:
        sub.first_id = conn.id
        sub.events.append((time.time(), "connected", conn.id, server_of(conn), False))
        async with trio.open_nursery() as nursery, conn.events() as feed:

            async def watch() -> None:
                async for ev in feed:
                    if isinstance(ev, client.ConnectionEvent):
                        srv = server_of(conn) if ev.state is client.ConnectionState.CONNECTED else ""
                        sub.events.append((time.time(), ev.state.value, ev.connection_id, srv, ev.resumed))

            nursery.start_soon(watch)
            ch = conn.channel(sub.channel)
            async with ch.subscribe() as feed_msgs:
                sub.attach = None if ch.serial is None else EPOCHS.key(ch.serial)
                sub.attached = True
                release()
                ready.set()
                async for msg in feed_msgs:
                    now = time.time()
                    if msg.serial is not None:
                        sub.on_message(EPOCHS.key(msg.serial), now)
                    if self.kill_t is None and isinstance(msg.data, dict) and "t" in msg.data:
                        self.latencies.append(now - float(msg.data["t"]))
            nursery.cancel_scope.cancel()

    def progress(self) -> dict[str, Any]:
        assert self.kill_t is not None and self.needed is not None
        affected = caught = 0
        for sub in self.subs:
            if sub.server_at(self.kill_t) != self.victim:
                continue
            affected += 1
            rc = sub.reconnect_after(self.kill_t)
            if rc is not None and sub.caught_up_at(self.needed.get(sub.channel, [])) is not None:
                caught += 1
        return {"type": "progress", "affected": affected, "caught": caught, "t": time.time()}

    async def report_progress(self) -> None:
        while not self.stop.is_set():
            p = self.progress()
            emit(p)
            if p["caught"] == p["affected"]:
                return
            await trio.sleep(PROGRESS_INTERVAL)

    async def drain(self, last: dict[str, str], within: float) -> None:
        keys = {ch: EPOCHS.key(s) for ch, s in last.items()}
        with trio.move_on_after(within):
            while True:
                if all(
                    keys.get(s.channel) is None or keys[s.channel] in s.first_seen or s.error is not None
                    for s in self.subs
                ):
                    return
                await trio.sleep(0.05)

    def result(self) -> dict[str, Any]:
        out = []
        for sub in self.subs:
            rec: dict[str, Any] = {
                "i": sub.index,
                "channel": sub.channel,
                "first_id": sub.first_id,
                "ids": sorted({cid for _, st, cid, _, _ in sub.events if st == "connected" and cid}),
                "attach": None if sub.attach is None else EPOCHS.serial(sub.attach),
                "ranges": sub.ranges(),
                "dupes": sub.dupes,
                "reorders": sub.reorders,
                "epoch_changes": sub.epoch_changes,
                "error": sub.error,
                "events": len(sub.events),
            }
            if self.kill_t is not None:
                rec["server_at_kill"] = sub.server_at(self.kill_t)
                rc = sub.reconnect_after(self.kill_t)
                rec["disconnected"] = sub.disconnected_after(self.kill_t)
                rec["connecting"] = sub.connecting_after(self.kill_t)
                rec["reconnect_t"] = None if rc is None else rc[0]
                rec["reconnect_id"] = None if rc is None else rc[1]
                rec["server_after"] = sub.server_at(time.time())
                if self.needed is not None:
                    rec["caught_t"] = sub.caught_up_at(self.needed.get(sub.channel, []))
            if self.dump_times:
                rec["times"] = [[EPOCHS.serial(k), round(t, 4)] for k, t in sub.first_seen.items()]
            out.append(rec)
        lat = sorted(self.latencies)
        sample = lat[:: max(1, len(lat) // 2000)]
        return {"type": "result", "subs": out, "latency_sample": sample}

    async def commands(self, nursery: trio.Nursery, drain_s: float) -> None:
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                return  # the parent went away
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = json.loads(line)
                if cmd["cmd"] == "kill":
                    self.kill_t, self.victim = float(cmd["t"]), cmd["victim"]
                elif cmd["cmd"] == "need":
                    self.needed = {ch: [EPOCHS.key(s) for s in ss] for ch, ss in cmd["serials"].items()}
                    nursery.start_soon(self.report_progress)
                elif cmd["cmd"] == "stop":
                    self.stop.set()
                    await self.drain(cmd["last"], drain_s)
                    emit(self.result())
                    return


async def main_async(args: argparse.Namespace) -> None:
    subs = [
        Sub(i, f"{CHANNEL_PREFIX}{i % args.channels}") for i in range(args.first, args.first + args.count)
    ]
    worker = Worker(args.url, subs, args.seed, args.dump_times)
    gate = trio.Semaphore(CONNECT_CONCURRENCY)
    async with trio.open_nursery() as nursery:
        readies = []
        for sub in subs:
            ev = trio.Event()
            readies.append(ev)
            nursery.start_soon(worker.run_sub, sub, gate, ev)
        for ev in readies:
            await ev.wait()
        emit(
            {
                "type": "ready",
                "subs": [
                    {
                        "i": s.index,
                        "channel": s.channel,
                        "id": s.first_id,
                        "server": s.server_at(time.time()),
                        "attach": None if s.attach is None else EPOCHS.serial(s.attach),
                        "error": s.error,
                    }
                    for s in subs
                ],
            }
        )
        await worker.commands(nursery, args.drain)
        nursery.cancel_scope.cancel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="router URL, ws://host:port")
    p.add_argument("--count", type=int, required=True, help="subscribers in this process")
    p.add_argument("--first", type=int, default=0, help="index of the first subscriber")
    p.add_argument("--channels", type=int, default=1, help="subscriber i is on channel i %% channels")
    p.add_argument("--seed", type=int, default=0, help="client i's backoff jitter is Random(seed*1000003+i)")
    p.add_argument("--dump-times", action="store_true", help="add every message's receipt time to the result")
    p.add_argument("--drain", type=float, default=15.0, help="s to wait for the last message on stop")
    trio.run(main_async, p.parse_args())


if __name__ == "__main__":
    main()

"""Numbered publishers and recording subscribers for cluster tests, and the exactly-once check."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import trio

import continuity
from tests.support.procs import API_KEY
from tests.support.streams import FAST_BACKOFF, parse_serial


def server_of(conn: continuity.Connection) -> str:
    """The frontend a connection is on, from CONNECTED's serverId (``continuity.<node_id>``)."""
    return str(conn.details.get("serverId", "")).removeprefix("continuity.")


@dataclass
class Publisher:
    channel: str
    acked: list[tuple[int, str]] = field(default_factory=list)  # (n, serial) in ACK order
    failed: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0
    stop: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)  # the last publish is answered

    async def run(
        self,
        url: str,
        *,
        rate: float,
        task_status: trio.TaskStatus[continuity.Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with continuity.connect(url, key=API_KEY, backoff=FAST_BACKOFF) as conn:
            ch = conn.channel(self.channel)
            await ch.attach()
            task_status.started(conn)
            while not self.stop.is_set():
                n = self.sent
                self.sent += 1
                try:
                    [serial] = await ch.publish("n", {"n": n})
                except continuity.PublishError as exc:
                    self.failed.append((n, str(exc.reason if hasattr(exc, "reason") else exc)))
                    continue
                assert serial is not None
                self.acked.append((n, serial))
                with trio.move_on_after(1 / rate):
                    await self.stop.wait()
        self.finished.set()


@dataclass
class Subscriber:
    channel: str
    got: list[tuple[int, str]] = field(default_factory=list)
    events: list[continuity.ChannelEvent] = field(default_factory=list)
    conn: continuity.Connection | None = None
    first_id: str | None = None
    attached_serial: str | None = None

    async def run(
        self,
        url: str,
        *,
        request_timeout: float = 10.0,
        task_status: trio.TaskStatus[Subscriber] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with continuity.connect(
            url, key=API_KEY, backoff=FAST_BACKOFF, request_timeout=request_timeout
        ) as conn:
            self.conn = conn
            self.first_id = conn.id
            ch = conn.channel(self.channel)
            async with ch.subscribe() as sub:
                self.attached_serial = ch.serial
                task_status.started(self)
                async for msg in sub:
                    assert isinstance(msg.data, dict)
                    assert msg.serial is not None
                    self.got.append((msg.data["n"], msg.serial))

    def caught_up(self, last_serial: str) -> bool:
        return bool(self.got) and parse_serial(self.got[-1][1]) >= parse_serial(last_serial)


def check_exactly_once(pub: Publisher, subs: list[Subscriber]) -> None:
    """Every ACKed publish after a subscriber attached reached it once, in serial order, no gap."""
    acked = dict((serial, n) for n, serial in pub.acked)
    for sub in subs:
        serials = [s for _, s in sub.got]
        dupes = sorted({x for x in serials if serials.count(x) > 1})
        assert not dupes, f"duplicates at {sub.first_id}: {dupes[:5]} in {serials}"
        parsed = [parse_serial(s) for s in serials]
        for (e0, s0), (e1, s1) in itertools.pairwise(parsed):
            assert e0 == e1 and s1 == s0 + 1, f"gap or reorder at {sub.first_id}: {e0}:{s0} -> {e1}:{s1}"
        start = parse_serial(sub.attached_serial) if sub.attached_serial else None
        expected = [s for s in acked if start is None or parse_serial(s) > start]
        missing = set(expected) - set(serials)
        assert not missing, f"{sub.first_id} lost {len(missing)} ACKed messages, e.g. {sorted(missing)[:3]}"
        assert all(acked.get(s, n) == n for n, s in sub.got), "payload does not match its serial"

"""The chaos load: SDK clients that publish numbered messages and record everything they receive.

Each :class:`ChaosClient` has its own fault tunnel (``tests/support/tunnel.py``, balancing over both
routers), one transport (WebSocket or Comet) and one wire format, and publishes to and/or subscribes
to some channels. It records, in the order the SDK surfaced them, every connection event, every
channel event and every message (see ``checker.py`` for the entry shapes), and every publish's
outcome. Times are seconds on the run's clock (``trio.current_time() - t0``).

The receive log is taken where the SDK dispatches (``Connection._dispatch`` pushes to every
subscription and event stream in one pass, in session order): one recorder is registered as both
the connection's event stream and each channel's subscription, so messages and the events between
them keep their relative order, which two separate feeds would lose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import trio

import continuity
from continuity import ChannelEvent, ChannelState, ConnectionEvent, ConnectionState, Message, PresenceEvent
from tests.support.procs import API_KEY
from tests.support.streams import FAST_BACKOFF
from tests.support.tunnel import Tunnel

REQUEST_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 60.0
OPERATION_TIMEOUT_S = 60.0
SUSPENDED_RETRY_S = 1.0
PAD = "x" * 64
BURST_PAD = "y" * 4096
BURST_BATCH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSpec:
    name: str
    transport: str  # "web_socket" | "comet"
    format: str  # "json" | "msgpack"
    publishes: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    bursts: tuple[str, ...] = ()  # channels it publishes bursts to, during slow-consumer faults
    router: int = 0  # the router its tunnel prefers
    pipeline: int = 1  # publishes in flight at once on each channel (>1: sent without awaiting each ACK)


class Recorder:
    """Quacks like ``continuity.Feed`` (``push``/``finish``): appends what the SDK dispatches to entries."""

    def __init__(self, owner: ChaosClient) -> None:
        self.owner = owner

    def push(self, item: Any) -> None:
        c = self.owner
        conn = c.conn
        assert conn is not None
        t = c.now()
        match item:
            case Message():
                data = item.data if isinstance(item.data, dict) else {}
                c.entries.append(
                    {
                        "k": "msg",
                        "ch": item.channel,
                        "t": t,
                        "serial": item.serial,
                        "pid": data.get("pid"),
                        "connected": conn.state is ConnectionState.CONNECTED,
                    }
                )
            case PresenceEvent(sync=True):
                c.entries.append(
                    {
                        "k": "sync",
                        "ch": item.channel,
                        "t": t,
                        "member": [item.client_id, item.connection_id],
                        "last": item.sync_last,
                    }
                )
            case PresenceEvent():
                event = [item.action, item.client_id, item.connection_id]
                last = c.entries[-1] if c.entries else None
                if last is not None and last["k"] == "pres" and last["serial"] == item.channel_serial:
                    last["events"].append(event)  # one PRESENCE frame, several events
                else:
                    c.entries.append(
                        {
                            "k": "pres",
                            "ch": item.channel,
                            "t": t,
                            "serial": item.channel_serial,
                            "events": [event],
                            "connected": conn.state is ConnectionState.CONNECTED,
                        }
                    )
            case ConnectionEvent():
                c.entries.append(
                    {
                        "k": "conn",
                        "t": t,
                        "state": str(item.state),
                        "id": item.connection_id,
                        "server": str(conn.details.get("serverId", "")),
                        "resumed": item.resumed,
                        "code": item.reason.code if item.reason else None,
                    }
                )
            case ChannelEvent() if item.state is ChannelState.ATTACHED:
                c.entries.append(
                    {
                        "k": "attach",
                        "ch": item.channel,
                        "t": t,
                        "resumed": item.resumed,
                        "code": item.reason.code if item.reason else None,
                        "serial": conn.channel(item.channel).serial,
                        "update": item.update,
                    }
                )
            case ChannelEvent():
                c.entries.append(
                    {
                        "k": "chan",
                        "ch": item.channel,
                        "t": t,
                        "state": str(item.state),
                        "code": item.reason.code if item.reason else None,
                    }
                )

    def finish(self, error: Exception | None = None) -> None:
        self.owner.finished = repr(error) if error is not None else "closed"


@dataclass(eq=False)
class ChaosClient:
    spec: ClientSpec
    tunnel: Tunnel
    t0: float
    rate: float  # publishes per second on each channel it publishes to
    conn: continuity.Connection | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    publishes: list[dict[str, Any]] = field(default_factory=list)
    finished: str | None = None  # why the recorder's feeds ended
    error: str | None = None  # why the client stopped early
    stop: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    sent: int = 0  # publishes handed to the SDK so far: each one's ``seq`` (its msgSerial order)

    def now(self) -> float:
        return round(trio.current_time() - self.t0, 4)

    @property
    def name(self) -> str:
        return self.spec.name

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, attach, record and publish until ``stop``; close on cancellation."""
        spec = self.spec
        async with continuity.connect(
            self.tunnel.url,
            key=API_KEY,
            format=spec.format,  # type: ignore[arg-type]
            transports=(spec.transport,),
            backoff=FAST_BACKOFF,
            request_timeout=REQUEST_TIMEOUT_S,
            connect_timeout=CONNECT_TIMEOUT_S,
            suspended_retry=SUSPENDED_RETRY_S,
            operation_timeout=OPERATION_TIMEOUT_S,
        ) as conn:
            self.conn = conn
            recorder = Recorder(self)
            for event in list(conn.event_log):  # what happened before we listened: CONNECTED
                recorder.push(event)
            conn._streams.append(recorder)  # type: ignore[arg-type]
            for name in spec.subscribes:
                conn.channel(name)._subs.append(recorder)  # type: ignore[arg-type]
                conn.channel(name)._presence_subs.append(recorder)  # type: ignore[arg-type]
            for name in (*spec.subscribes, *spec.publishes, *spec.bursts):
                await self._attach(conn, name)
            if spec.subscribes:
                await self._enter(conn, spec.subscribes[0])
            task_status.started()
            self.ready.set()
            async with trio.open_nursery() as nursery:
                for i, name in enumerate(spec.publishes):
                    nursery.start_soon(self._publish_loop, conn, name, i)
            await trio.sleep_forever()

    async def _enter(self, conn: continuity.Connection, name: str) -> None:
        """Enter this client's presence member (clientId = its name) on ``name``, recorded. The SDK
        enters it again after its connection is replaced (RTP17)."""
        conn_id = conn.id
        try:
            await conn.channel(name).presence("enter", {"client": self.name}, client_id=self.name)
        except continuity.ClientError as exc:
            self.entries.append({"k": "enter_failed", "t": self.now(), "error": repr(exc)})
            return
        self.entries.append({"k": "entered", "ch": name, "t": self.now(), "id": conn_id})

    async def _attach(self, conn: continuity.Connection, name: str) -> None:
        """The first attach, retried while it times out (SUSPENDED, 90007): on a loaded machine the
        cluster may answer late while it starts; the caller bounds the whole start-up."""
        while True:
            try:
                await conn.channel(name).attach()
                return
            except continuity.ChannelFailedError:
                if conn.channel(name).state is not ChannelState.SUSPENDED:
                    raise
            await trio.sleep(SUSPENDED_RETRY_S)  # a back-off before the retry, not a wait for a condition

    async def _publish_loop(self, conn: continuity.Connection, name: str, index: int) -> None:
        """Publish numbered messages at ``rate``; with ``pipeline`` > 1, up to that many are in flight
        (a publisher that does not await each ACK, whose order the checker holds the server to)."""
        ch = conn.channel(name)
        n = 0
        in_flight = trio.Semaphore(self.spec.pipeline)
        alive = True

        async def one(rec: dict[str, Any]) -> None:
            nonlocal alive
            try:
                if not await self.publish_one(ch, [rec], {"pid": rec["pid"], "pad": PAD}):
                    alive = False
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            while not self.stop.is_set() and alive:
                await in_flight.acquire()
                if not alive or not await self._publishable(conn):
                    in_flight.release()
                    return
                rec = self.record(f"{self.name}:{index}:{n}", name)
                n += 1
                if self.spec.pipeline == 1:
                    await one(rec)
                else:
                    nursery.start_soon(one, rec)
                with trio.move_on_after(1 / self.rate):  # pacing, not waiting for a condition
                    await self.stop.wait()

    async def _publishable(self, conn: continuity.Connection) -> bool:
        """Wait while SUSPENDED (a publish would be refused at once); False if the connection ended."""
        while conn.state is ConnectionState.SUSPENDED and not self.stop.is_set():
            try:
                await conn.wait_for_state(ConnectionState.CONNECTED)
            except trio.TooSlowError:
                continue
            except continuity.ClientError as exc:
                if conn.state is ConnectionState.SUSPENDED:
                    continue
                self.error = f"{type(exc).__name__}: {exc}"
                return False
        return not self.stop.is_set() and conn.state not in (ConnectionState.CLOSED, ConnectionState.FAILED)

    def record(self, pid: str, channel: str) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "pid": pid,
            "client": self.name,
            "channel": channel,
            "outcome": "indeterminate",
            "serial": None,
            "code": None,
            "sent": self.now(),
            "t": None,
        }
        self.publishes.append(rec)
        return rec

    async def publish_one(
        self,
        ch: continuity.Channel,
        recs: list[dict[str, Any]],
        data: dict[str, Any] | None,
        batch: list[continuity.OutboundMessage] | None = None,
    ) -> bool:
        """Publish (one message ``data``, or ``batch``), record each outcome; False if the connection died."""
        alive = True
        for rec in recs:
            rec["seq"] = self.sent  # ch.publish hands it to the session before its first checkpoint
        self.sent += 1
        try:
            serials = await (ch.publish(batch) if batch is not None else ch.publish("n", data))
            for rec, serial in zip(recs, serials, strict=True):
                rec["outcome"], rec["serial"] = "ack", serial
        except continuity.PublishError as exc:
            for rec in recs:
                rec["outcome"], rec["code"] = "nack", exc.reason.code if exc.reason else None
        except continuity.ConnectionSuspendedError as exc:
            for rec in recs:  # RTN7e: failed on SUSPENDED; the server may or may not have it
                rec["outcome"], rec["code"] = "indeterminate", exc.reason.code if exc.reason else None
        except continuity.ClientError as exc:
            for rec in recs:
                rec["outcome"], rec["code"] = "failed", exc.reason.code if exc.reason else None
            self.error = f"{type(exc).__name__}: {exc}"
            alive = False
        for rec in recs:
            rec["t"] = self.now()
        return alive

    async def burst(self, channel: str, until: float) -> int:
        """Publish padded batches to ``channel`` until ``until`` (run clock); return the count."""
        conn = self.conn
        assert conn is not None
        ch = conn.channel(channel)
        sent = 0
        while trio.current_time() - self.t0 < until and await self._publishable(conn):
            recs = [
                self.record(f"{self.name}:burst:{len(self.publishes)}", channel) for _ in range(BURST_BATCH)
            ]
            batch = continuity.messages((None, {"pid": r["pid"], "pad": BURST_PAD}) for r in recs)
            with trio.move_on_at(self.t0 + until + 30):  # an answer is due; past that it stays indeterminate
                if not await self.publish_one(ch, recs, None, batch=batch):
                    break
            sent += len(recs)
        return sent

    def unanswered(self) -> int:
        return sum(1 for r in self.publishes if r["t"] is None)

    def logs(self) -> list[dict[str, Any]]:
        """One receive log per subscribed channel, as ``checker.check`` takes them."""
        out = []
        for name in self.spec.subscribes:
            state = self.conn.channel(name).state if self.conn is not None else None
            entries = [e for e in self.entries if e.get("ch", name) == name]
            out.append(
                {
                    "client": self.name,
                    "channel": name,
                    "attached_at_end": state is ChannelState.ATTACHED,
                    "transport": self.spec.transport,
                    "format": self.spec.format,
                    "entries": entries,
                }
            )
        return out

    def outages(self, until: float) -> list[tuple[float, float]]:
        """(left CONNECTED, CONNECTED again) intervals that began before ``until`` (the load's end);
        one still open at the end runs to inf."""
        out: list[tuple[float, float]] = []
        down = None
        for e in self.entries:
            if e["k"] != "conn":
                continue
            if e["state"] == "connected":
                if down is not None and e["t"] > down:
                    out.append((down, e["t"]))
                down = None
            elif down is None and e["t"] < until:
                down = e["t"]
        if down is not None:
            out.append((down, math.inf))
        return out

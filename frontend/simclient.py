"""The simulation's clients: an Ably realtime connection as the official SDKs behave, in virtual time.

Theory of operation
-------------------
A ``SimClient`` connects through a router (``router.decide`` over that router's
lagging map) to a frontend, over a ``Transport`` whose frames travel in order
with a seeded latency both ways. It behaves as ably-js does where it matters
to the guarantees:

- publishes are pipelined (a burst goes out without waiting for ACKs), each a
  MESSAGE with the next msgSerial, and are outcome-recorded on ACK or NACK;
- when its transport drops (DISCONNECTED, a killed frontend, a cut tunnel) it
  reconnects through a random router with ``resume=<key>``: on the same
  connectionId it re-sends every publish still awaiting an ACK with the same
  msgSerial (RTN19a); on a new connectionId those become *indeterminate*
  (their fate is unknown) and msgSerial restarts;
- after any CONNECTED it re-attaches every channel from the channelSerial it
  holds (RTL4c1), which ATTACHED and each MESSAGE update (RTL15b); an attach not
  answered within the request timeout is sent again (RTL13b), and a late
  ATTACHED still completes it (c257f29);
- a connect that gets no CONNECTED within ``CONNECT_TIMEOUT_MS`` is abandoned
  and retried with the same key (ably-js's fallback from a slow transport), and
  with ``--connected-lost P`` a share P of resumes lose their CONNECTED with the
  transport (a proxy reset as it arrives): either way the retry carries a key
  the server may have just replaced (c257f29).

Everything a client sees is recorded in the chaos checker's format
(``bench/chaos/checker.py``): one record per publish, and per subscribed
channel the ordered receive log. Pure: the world's scheduler drives it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from frontend.simnet import SimRandom
from frontend.simworld import SimWorld
from kernel.errors import RemoteProtocolError
from kernel.protocol import Action, Encoded, Flag, Format, ProtocolMessage

if TYPE_CHECKING:
    from frontend.session import Session

ATTACH_TIMEOUT_MS = 10_000
# A connect not answered (CONNECTED) within a timeout drawn from this range is abandoned and tried
# again with the same key, as ably-js falls back from a slow WebSocket to another transport
# (webSocketSlowTimeout, 4 s) or an application sets a short realtimeRequestTimeout: a takeover that
# waits on an owner out of sight outlasts it, so the retry carries the key it replaced (c257f29).
CONNECT_TIMEOUT_MS = (1_000, 5_000)
RECONNECT_MS = (200, 1_500)


class ClientSettings(Protocol):
    @property
    def connected_lost(self) -> float:
        """The share of resumes whose CONNECTED is lost with the transport."""
        ...


class ClientWorld(SimWorld, Protocol):
    """The world as its clients see it: it routes a connect through one of its routers."""

    @property
    def cfg(self) -> ClientSettings: ...

    def route(self, client: SimClient, params: dict[str, str]) -> None:
        """Route ``client``'s connect (``params``) to a frontend; answers ``attached_transport`` or
        ``route_failed``."""
        ...


class Transport:
    """One client connection to one frontend process: ordered frames both ways (the node's Outlet)."""

    fmt: Format = "json"

    def __init__(self, world: ClientWorld, client: SimClient, node_id: str) -> None:
        self.world = world
        self.client = client
        self.node_id = node_id
        self.process = world.nodes[node_id]  # the frontend process this transport reached
        self.session: Session | None = None
        self.open = True  # neither end closed it
        self.node_closed = False
        self._to_client = 0
        self._to_node = 0

    def _arrival(self, last: int) -> int:
        lo, hi = self.world.client_latency_ms
        return max(self.world.sched.now + self.world.rng.randint(lo, hi), last)

    # -- node side (Outlet) ----------------------------------------------------
    def send(self, frame: Encoded, *, force: bool = False) -> bool:
        if self.node_closed:
            return True
        wire = frame.wire
        self._to_client = t = self._arrival(self._to_client)
        self.world.sched.at(t, lambda: self._to_client_arrive(wire))
        return True

    def _to_client_arrive(self, wire: dict[str, Any]) -> None:
        if self.open:
            self.client.receive(self, wire)

    def close(self, final: Encoded | None) -> None:
        if self.node_closed:
            return
        if final is not None:
            self.send(final)
        self.node_closed = True
        self._to_client = t = self._arrival(self._to_client)
        self.world.sched.at(t, lambda: self.client.transport_closed(self))

    # -- client side ------------------------------------------------------------
    def deliver(self, pm: ProtocolMessage) -> None:
        self._to_node = t = self._arrival(self._to_node)
        self.world.sched.at(t, lambda: self._at_node(pm))

    def _at_node(self, pm: ProtocolMessage) -> None:
        if not self.open or self.node_closed or self.session is None:
            return
        node = self.process
        session = self.session
        if self.world.nodes.get(self.node_id) is not node:
            return

        def handle() -> None:
            try:
                node.handle(self.world.sched.now, session, pm)
            except RemoteProtocolError:
                self.world.counts["client_protocol_errors"] += 1

        self.world.input(self.node_id, handle)

    def cut(self) -> None:
        """The client end goes away (tunnel cut, client gives up): the node sees it lost."""
        if not self.open:
            return
        self.open = False
        node, session = self.process, self.session
        if session is not None and not self.node_closed and self.world.nodes.get(self.node_id) is node:
            t = self.world.sched.now + self.world.rng.randint(*self.world.client_latency_ms)

            def lost() -> None:
                if self.world.nodes.get(self.node_id) is node:
                    self.world.input(
                        self.node_id, lambda: node.transport_lost(self.world.sched.now, session, self)
                    )

            self.world.sched.at(t, lost)


@dataclass(slots=True)
class _Channel:
    name: str
    subscribe: bool
    serial: str | None = None
    attached: bool = False
    attach_sent_ms: int | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


class SimClient:
    def __init__(
        self, world: ClientWorld, name: str, channels: list[tuple[str, bool]], rng: random.Random
    ) -> None:
        self.world = world
        self.name = name
        self.rng = rng
        # Its own stream, so that drawing timeouts leaves every other draw of the run unchanged.
        self._timeouts = SimRandom(f"connect-timeouts:{world.seed}:{name}")
        self.channels = {ch: _Channel(ch, sub) for ch, sub in channels}
        self.transport: Transport | None = None
        self.connected = False
        self.conn_id: str | None = None
        self.key: str | None = None
        self.msg_serial = 0
        self.pending: dict[int, dict[str, Any]] = {}  # msgSerial -> publish record awaiting ACK
        self.sent: dict[int, ProtocolMessage] = {}
        self.published = 0
        self.records: list[dict[str, Any]] = []
        self.stopped = False

    @property
    def t(self) -> float:
        return self.world.sched.now / 1000

    def _event(self, entry: dict[str, Any]) -> None:
        for ch in self.channels.values():
            if ch.subscribe:
                ch.log.append(entry)

    # -- connection ---------------------------------------------------------
    def connect(self) -> None:
        params = {"v": "6", "key": "sim.key:secret"}
        if self.key is not None:
            params["resume"] = self.key
        self.world.route(self, params)

    def attached_transport(self, transport: Transport) -> None:
        self.transport = transport

        def slow() -> None:
            if self.transport is transport and not self.connected:
                self.world.counts["connect_timeouts"] += 1
                transport.cut()
                self.transport_closed(transport)

        self.world.sched.at(self.world.sched.now + self._timeouts.randint(*CONNECT_TIMEOUT_MS), slow)

    def transport_closed(self, transport: Transport) -> None:
        if transport is not self.transport:
            return
        transport.open = False
        self.transport = None
        if self.connected:
            self.connected = False
            self._event({"k": "conn", "t": self.t, "state": "disconnected", "id": self.conn_id})
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self.world.sched.at(self.world.sched.now + self.rng.randint(*RECONNECT_MS), self._reconnect)

    def _reconnect(self) -> None:
        if self.transport is None:
            self.connect()

    def route_failed(self) -> None:
        self._schedule_reconnect()

    def cut(self) -> None:
        """The tunnel to the frontend is cut: both ends see the transport go."""
        tr = self.transport
        if tr is not None:
            tr.cut()
            self.transport_closed(tr)

    def receive(self, tr: Transport, wire: dict[str, Any]) -> None:
        if tr is not self.transport:
            return
        action = wire.get("action")
        if action == Action.CONNECTED:
            lost = self.world.cfg.connected_lost
            if lost and self.key is not None and self._timeouts.random() < lost:
                self.world.counts["connected_lost"] += 1
                tr.cut()
                self.transport_closed(tr)
                return
            self._on_connected(tr, wire)
        elif action == Action.ATTACHED:
            self._on_attached(wire)
        elif action == Action.MESSAGE:
            self._on_message(wire)
        elif action == Action.ACK:
            self._on_ack(wire)
        elif action == Action.NACK:
            self._on_nack(wire)
        elif action == Action.DETACHED:
            ch = self.channels.get(wire.get("channel", ""))
            if ch is not None:
                ch.attached = False
                self.world.sched.at(self.world.sched.now + 1_000, lambda: self._attach(ch))
        elif action in (Action.DISCONNECTED, Action.ERROR) and wire.get("channel") is None:
            if action == Action.ERROR:
                self.key = None  # refused outright: the next attempt is a new connection
            tr.cut()
            self.transport_closed(tr)

    def _on_connected(self, tr: Transport, wire: dict[str, Any]) -> None:
        conn_id = wire.get("connectionId")
        resumed = conn_id == self.conn_id
        if not resumed:
            for rec in self.pending.values():
                rec["outcome"], rec["t"] = "indeterminate", self.t
            self.pending.clear()
            self.sent.clear()
            self.msg_serial = 0
        self.conn_id = conn_id
        self.key = (wire.get("connectionDetails") or {}).get("connectionKey")
        self.connected = True
        error = wire.get("error") or {}
        self._event(
            {"k": "conn", "t": self.t, "state": "connected", "id": conn_id, "server": tr.node_id,
             "resumed": resumed, "code": error.get("code")}
        )  # fmt: skip
        for serial in sorted(self.sent):
            tr.deliver(self.sent[serial])  # RTN19a: the same msgSerial, deduplicated by the home
        for ch in self.channels.values():
            ch.attached = False
            self._attach(ch)

    def _attach(self, ch: _Channel) -> None:
        tr = self.transport
        if tr is None or not self.connected or ch.attached:
            return
        ch.attach_sent_ms = now = self.world.sched.now
        flags = int(Flag.SUBSCRIBE | Flag.PUBLISH) if ch.subscribe else int(Flag.PUBLISH)
        tr.deliver(
            ProtocolMessage(action=Action.ATTACH, channel=ch.name, channel_serial=ch.serial, flags=flags)
        )

        def timeout() -> None:
            if not ch.attached and ch.attach_sent_ms == now and self.transport is tr:
                self._attach(ch)  # RTL13b: retry; a late ATTACHED still completes the attach

        self.world.sched.at(now + ATTACH_TIMEOUT_MS, timeout)

    def _on_attached(self, wire: dict[str, Any]) -> None:
        ch = self.channels.get(wire.get("channel", ""))
        if ch is None:
            return
        if wire.get("channelSerial"):
            ch.serial = wire["channelSerial"]
        ch.attached = True
        if ch.subscribe:
            error = wire.get("error") or {}
            ch.log.append(
                {"k": "attach", "t": self.t, "resumed": bool(wire.get("flags", 0) & Flag.RESUMED),
                 "code": error.get("code"), "serial": ch.serial}
            )  # fmt: skip

    def _on_message(self, wire: dict[str, Any]) -> None:
        ch = self.channels.get(wire.get("channel", ""))
        if ch is None:
            return
        if wire.get("channelSerial"):
            ch.serial = wire["channelSerial"]
        if not ch.subscribe:
            return
        for m in wire.get("messages") or ():
            data = m.get("data") or {}
            ch.log.append(
                {"k": "msg", "t": self.t, "serial": m.get("serial"), "pid": data.get("pid"),
                 "connected": self.connected}
            )  # fmt: skip

    def _resolve(self, wire: dict[str, Any], outcome: str) -> None:
        first, count = int(wire.get("msgSerial", -1)), int(wire.get("count") or 1)
        res = wire.get("res") or []
        code = (wire.get("error") or {}).get("code")
        for i in range(count):
            rec = self.pending.pop(first + i, None)
            self.sent.pop(first + i, None)
            if rec is None:
                continue
            rec["outcome"], rec["t"], rec["code"] = outcome, self.t, code
            if outcome == "ack" and i < len(res):
                serials = res[i].get("serials") or [None]
                rec["serial"] = serials[0]

    def _on_ack(self, wire: dict[str, Any]) -> None:
        self._resolve(wire, "ack")

    def _on_nack(self, wire: dict[str, Any]) -> None:
        self._resolve(wire, "nack")

    # -- publishing -----------------------------------------------------------
    def publish_burst(self, channel: str, n: int) -> None:
        """Pipeline ``n`` publishes on ``channel`` (one message each) without waiting for ACKs."""
        tr = self.transport
        if tr is None or not self.connected or self.stopped:
            return
        for _ in range(n):
            pid = f"{self.name}:{self.published}"
            self.published += 1
            serial = self.msg_serial
            self.msg_serial += 1
            rec = {"pid": pid, "client": self.name, "conn": self.conn_id, "channel": channel,
                   "outcome": "indeterminate", "serial": None, "code": None, "t": self.t,
                   "sent_t": self.t}  # fmt: skip
            self.records.append(rec)
            self.pending[serial] = rec
            pm = ProtocolMessage(action=Action.MESSAGE, channel=channel, msg_serial=serial,
                                 messages=[{"data": {"pid": pid}}])  # fmt: skip
            self.sent[serial] = pm
            tr.deliver(pm)

    def logs(self) -> list[dict[str, Any]]:
        return [
            {"client": self.name, "channel": ch.name, "attached_at_end": ch.attached and self.connected,
             "entries": ch.log}
            for ch in self.channels.values()
            if ch.subscribe
        ]  # fmt: skip


Publisher = Callable[[], None]

"""The client's connection state machine: pure, no I/O, no clock.

Theory of operation
-------------------
A :class:`ClientSession` is one logical Ably connection across any number of transports. The driver
feeds it (``start_connect``, ``handle``, ``transport_lost``, ``tick``, all taking ``now`` in seconds)
and drains it (``outgoing()`` frames for the current transport, ``events()`` for the application).

Invariants:

* **msgSerial** is assigned at send time, from 0 per connectionId (RTN7).
  Un-ACKed publishes stay in ``_pending`` in serial order; a re-send after a
  successful resume keeps the serial (RTN19a2). A failed resume (a new
  connectionId) renumbers every pending publish from 0.
* **ACK/NACK** ``{msgSerial: S, count: N}`` completes publishes from the head
  of the queue whose serial is below ``S + N`` (RTN7a); ``res[i]`` belongs to
  serial ``S + i``.
* **channelSerial** is stored from every ATTACHED and MESSAGE before any state
  check (RTL15b); messages are surfaced only while the channel is attached
  (RTL17).
* On every CONNECTED the session first re-sends pending publishes, then
  re-ATTACHes every channel that was attached or attaching, carrying its
  channelSerial (RTN15c6/c7, RTL3d, PROTOCOL.md 3.4). The server decides
  continuity: ATTACHED with RESUMED, or without it and with error 90003.
* Frames are only produced while a transport is CONNECTED; anything asked for while disconnected is
  remembered as intent and sent on the next CONNECTED.
* Deadlines live in data: connect timeout, idle timeout (maxIdleInterval + request timeout, RTN23),
  attach timeout, suspend (connectionStateTtl after the last transport loss) and the next reconnect
  (full-jitter backoff). ``next_deadline()`` says when ``tick`` is due.
* CLOSED and FAILED are terminal: the session refuses further input.
"""

from __future__ import annotations

import random
from typing import Any

from continuity import presence
from continuity.errors import (
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionSuspendedError,
)
from continuity.events import (
    ChannelEvent,
    ChannelState,
    ConnectionEvent,
    ConnectionState,
    CoreEvent,
    MessageReceived,
    Pong,
    PublishAcked,
    PublishFailed,
    TransportDropped,
)
from continuity.records import ChannelRecord, SessionConfig, _Pending, idle_timeout_error
from continuity.recovery import RecoveryKey
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import Action, Flag, ProtocolMessage

# Codes the client raises itself, with the statuses Ably pairs them with.
ATTACH_TIMEOUT = ErrorInfo(code=90007, status_code=408, message="timed out waiting for ATTACHED")
CONNECT_TIMEOUT = ErrorInfo(code=80003, status_code=408, message="timed out waiting for CONNECTED")
TERMINAL = frozenset({ConnectionState.CLOSED, ConnectionState.FAILED})
_REATTACH = frozenset({ChannelState.ATTACHED, ChannelState.ATTACHING, ChannelState.SUSPENDED})


class ClientSession:
    """One logical connection's bookkeeping. See the module docstring."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        rng: random.Random | None = None,
        recover: RecoveryKey | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self._rng = rng or random.Random()
        self.state = ConnectionState.INITIALIZED
        self.connection_id: str | None = None
        self.connection_key: str | None = None
        self.details: dict[str, Any] = {}
        self.error_reason: ErrorInfo | None = None
        self.msg_serial = 0
        self.channels: dict[str, ChannelRecord] = {}
        self._recover = recover
        self._pending: list[_Pending] = []
        self._next_token = 0
        self._out: list[ProtocolMessage] = []
        self._events: list[CoreEvent] = []
        # Timers (absolute times, seconds).
        self._connect_deadline: float | None = None
        self._last_activity = 0.0
        self._disconnected_since: float | None = None
        self._reconnect_at: float | None = None
        self._attempt = 0
        self._ttl_s = 120.0
        self._max_idle_s = 0.0
        if recover is not None:
            self.msg_serial = recover.msg_serial
            for name, serial in recover.channel_serials.items():
                self.channels[name] = ChannelRecord(name=name, serial=serial)

    # ------------------------------------------------------------------ queries

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def reconnect_at(self) -> float | None:
        """When the driver should open the next transport (None: not now, or at once if INITIALIZED)."""
        return self._reconnect_at

    def wants_transport(self, now: float) -> bool:
        """True when the driver should open a transport now."""
        if self.state is ConnectionState.INITIALIZED:
            return True
        if self.state in (ConnectionState.DISCONNECTED, ConnectionState.SUSPENDED):
            return self._reconnect_at is None or now >= self._reconnect_at
        return False

    def connect_params(self) -> dict[str, str]:
        """``resume=``/``recover=`` for the next transport (RTN15b1, RTN16k)."""
        if self.connection_key is not None:
            return {"resume": self.connection_key}
        if self._recover is not None:
            return {"recover": self._recover.connection_key}
        return {}

    def recovery_key(self) -> RecoveryKey | None:
        """The key ``createRecoveryKey()`` would give (RTN16g); None without a connection key."""
        if self.connection_key is None or self.state in TERMINAL:
            return None
        serials = {name: ch.serial for name, ch in self.channels.items() if ch.serial}
        return RecoveryKey(connection_key=self.connection_key, msg_serial=self.msg_serial,
                           channel_serials=serials)

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has work to do, or None."""
        times: list[float] = []
        if self.state is ConnectionState.CONNECTING and self._connect_deadline is not None:
            times.append(self._connect_deadline)
        if self.state is ConnectionState.CONNECTED:
            if self._max_idle_s > 0:
                times.append(self._idle_deadline())
            times.extend(ch.attach_deadline for ch in self.channels.values()
                         if ch.attach_deadline is not None)
            times.extend(ch.retry_at for ch in self.channels.values()
                         if ch.retry_at is not None and ch.state is ChannelState.SUSPENDED)
        if self._disconnected_since is not None and self.state in (
            ConnectionState.DISCONNECTED, ConnectionState.CONNECTING
        ):
            times.append(self._disconnected_since + self._suspend_after())
        if self._reconnect_at is not None and self.state in (
            ConnectionState.DISCONNECTED, ConnectionState.SUSPENDED
        ):
            times.append(self._reconnect_at)
        return min(times) if times else None

    def outgoing(self) -> list[ProtocolMessage]:
        """Drain the frames to send on the current transport, in order."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[CoreEvent]:
        """Drain the events produced since the last call, in order."""
        out, self._events = presence.reentry_outcomes(self, self._events), []
        return out

    # ------------------------------------------------------------ driver inputs

    def start_connect(self, now: float) -> None:
        """The driver is opening a transport now (while CONNECTING: the next one of a fallback,
        which gets a connect deadline of its own)."""
        self._check_live()
        if self.state is ConnectionState.CONNECTING:
            self._connect_deadline = now + self.config.request_timeout
            return
        if self.state not in (ConnectionState.INITIALIZED, ConnectionState.DISCONNECTED,
                              ConnectionState.SUSPENDED):
            return
        self._out.clear()
        self._connect_deadline = now + self.config.request_timeout
        self._reconnect_at = None
        self._set_state(ConnectionState.CONNECTING, reason=self.error_reason)

    def transport_lost(self, now: float, reason: ErrorInfo | None = None) -> None:
        """The current transport is gone (closed, reset, timed out, or dropped on our request)."""
        self._out.clear()
        if self.state in (ConnectionState.CONNECTED, ConnectionState.CONNECTING):
            if self._disconnected_since is None:
                self._disconnected_since = now
            self._reconnect_at = now + self._retry_delay()
            self._attempt += 1
            for ch in self.channels.values():
                ch.attach_deadline = None
            if reason is not None:
                self.error_reason = reason
            self._set_state(ConnectionState.DISCONNECTED, reason=reason)
            self._check_suspend(now)
        elif self.state is ConnectionState.CLOSING:
            self._terminate(ConnectionState.CLOSED, None)

    def tick(self, now: float) -> None:
        """Fire every deadline that has passed."""
        if self.state is ConnectionState.CONNECTING and self._connect_deadline is not None:
            if now >= self._connect_deadline:
                self._drop(CONNECT_TIMEOUT)
                self.transport_lost(now, CONNECT_TIMEOUT)
                return
        if self.state is ConnectionState.CONNECTED:
            if self._max_idle_s > 0 and now >= self._idle_deadline():
                reason = idle_timeout_error(int((now - self._last_activity) * 1000))
                self._drop(reason)
                self.transport_lost(now, reason)
                return
            for ch in self.channels.values():
                if ch.attach_deadline is not None and now >= ch.attach_deadline:
                    ch.attach_deadline = None
                    ch.retry_at = now + self.config.channel_retry
                    self._channel_state(ch, ChannelState.SUSPENDED, reason=ATTACH_TIMEOUT)
                elif ch.state is ChannelState.SUSPENDED and ch.retry_at is not None and now >= ch.retry_at:
                    ch.retry_at = None
                    self._channel_state(ch, ChannelState.ATTACHING)
                    self._send_attach(now, ch)
        if self.state in (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING):
            self._check_suspend(now)

    def handle(self, now: float, pm: ProtocolMessage) -> None:
        """Feed one inbound ProtocolMessage."""
        if self.state in TERMINAL:
            return
        self._last_activity = now
        handler = _HANDLERS.get(pm.action)
        if handler is not None:
            handler(self, now, pm)

    def activity(self, now: float) -> None:
        """The transport is alive though no frame came (a completed Comet recv counts, RTN23)."""
        if self.state not in TERMINAL:
            self._last_activity = now

    # --------------------------------------------------------------- app inputs

    def publish(self, channel: str, messages: list[dict[str, Any]], *, presence: bool = False) -> int:
        """Queue a publish; returns the token its PublishAcked/PublishFailed will carry.

        Raises a ClientError subclass when the connection cannot publish (SUSPENDED, CLOSED, FAILED).
        """
        self._check_publishable()
        token = self._next_token
        self._next_token += 1
        entry = _Pending(token=token, channel=channel, messages=messages, presence=presence)
        self._pending.append(entry)
        if self.state is ConnectionState.CONNECTED:
            self._send_pending(entry)
        return token

    def attach(self, now: float, name: str, *, modes: int = 0, params: dict[str, str] | None = None) -> None:
        """Ask for ``name`` to be attached (RTL4); a no-op if already attached or attaching."""
        self._check_live()
        ch = self.channel(name)
        ch.modes, ch.params = modes, params
        if ch.state in (ChannelState.ATTACHED, ChannelState.ATTACHING):
            return
        self._channel_state(ch, ChannelState.ATTACHING)
        if self.state is ConnectionState.CONNECTED:
            self._send_attach(now, ch)

    def detach(self, name: str) -> None:
        """Ask for ``name`` to be detached (RTL5)."""
        self._check_live()
        ch = self.channel(name)
        if ch.state in (ChannelState.INITIALIZED, ChannelState.DETACHED, ChannelState.DETACHING):
            return
        if (ch.state in (ChannelState.FAILED, ChannelState.SUSPENDED)
                or self.state is not ConnectionState.CONNECTED):
            self._channel_state(ch, ChannelState.DETACHED)
            return
        ch.attach_deadline = None
        self._channel_state(ch, ChannelState.DETACHING)
        self._out.append(ProtocolMessage(action=Action.DETACH, channel=name))

    def ping(self, ping_id: str) -> None:
        """Send a HEARTBEAT carrying ``ping_id`` (RTN13); the echo becomes a Pong event."""
        if self.state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError(f"cannot ping while {self.state}")
        self._out.append(ProtocolMessage(action=Action.HEARTBEAT, id=ping_id))

    def send_raw(self, pm: ProtocolMessage) -> None:
        """Send a frame the session does not track (for tests and tools)."""
        if self.state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError(f"cannot send while {self.state}")
        self._out.append(pm)

    def close(self) -> None:
        """Close the connection (RTN12): CLOSE if connected, else straight to CLOSED."""
        if self.state in TERMINAL or self.state is ConnectionState.CLOSING:
            return
        if self.state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.CLOSING)
            self._out.append(ProtocolMessage(action=Action.CLOSE))
        else:
            self._drop(None)
            self._terminate(ConnectionState.CLOSED, None)

    def abandon(self) -> None:
        """Drop the transport and end locally without CLOSE: the server keeps the state (for recover)."""
        if self.state in TERMINAL:
            return
        self._drop(None)
        self._terminate(ConnectionState.CLOSED, None)

    def channel(self, name: str) -> ChannelRecord:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = ChannelRecord(name=name)
        return ch

    # ---------------------------------------------------------------- handlers

    def handle_heartbeat(self, now: float, pm: ProtocolMessage) -> None:
        if pm.id:
            self._events.append(Pong(id=pm.id))

    def handle_connected(self, now: float, pm: ProtocolMessage) -> None:
        details = pm.connection_details or {}
        self._apply_details(details)
        if self.state is ConnectionState.CONNECTED:
            return  # a reauth's CONNECTED on the same transport (RTN24)
        if self.state is not ConnectionState.CONNECTING:
            return
        previous_id = self.connection_id
        recovering = self._recover is not None and previous_id is None
        if previous_id is not None:
            resumed = pm.connection_id == previous_id  # RTN15c6: judged by connectionId only
        elif recovering:
            resumed = pm.error is None  # RTN16d: no previous id, judged by the error
        else:
            resumed = False
        if not resumed and (previous_id is not None or recovering):
            # RTN15c7 / RTN16l: a new connection. msgSerial restarts, pending publishes are renumbered.
            self.msg_serial = 0
            for entry in self._pending:
                entry.msg_serial = None
        self._recover = None
        self.connection_id = pm.connection_id
        key = details.get("connectionKey")
        self.connection_key = key if isinstance(key, str) and key else self.connection_key
        self.error_reason = pm.error
        self._connect_deadline = None
        self._disconnected_since = None
        self._reconnect_at = None
        self._attempt = 0
        self._set_state(ConnectionState.CONNECTED, reason=pm.error, resumed=resumed)
        # PROTOCOL.md 3.4: queued publishes go out before the re-ATTACHes.
        for entry in self._pending:
            self._send_pending(entry)
        for ch in self.channels.values():
            if ch.state in _REATTACH:
                self._channel_state(ch, ChannelState.ATTACHING)
                self._send_attach(now, ch)
            elif ch.state is ChannelState.DETACHING:
                self._out.append(ProtocolMessage(action=Action.DETACH, channel=ch.name))

    def handle_disconnected(self, now: float, pm: ProtocolMessage) -> None:
        self._drop(pm.error)
        self.transport_lost(now, pm.error)

    def handle_closed(self, now: float, pm: ProtocolMessage) -> None:
        self._drop(pm.error)
        self._terminate(ConnectionState.CLOSED, pm.error)

    def handle_error(self, now: float, pm: ProtocolMessage) -> None:
        reason = pm.error or ErrorInfo.of(ErrorCode.INTERNAL, "ERROR without an error")
        if pm.channel is not None:
            ch = self.channels.get(pm.channel)
            if ch is None:
                return
            if reason.code == 80016:  # "retry the pending attach"
                if ch.state is ChannelState.ATTACHING:
                    self._send_attach(now, ch)
                return
            ch.attach_deadline = None
            self._channel_state(ch, ChannelState.FAILED, reason=reason)
            return
        # RTN15c4 / RTN14g: an ERROR without a channel is fatal.
        self._drop(reason)
        self._terminate(ConnectionState.FAILED, reason)

    def handle_ack(self, now: float, pm: ProtocolMessage) -> None:
        self._complete(pm, nack=False)

    def handle_nack(self, now: float, pm: ProtocolMessage) -> None:
        self._complete(pm, nack=True)

    def handle_attached(self, now: float, pm: ProtocolMessage) -> None:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return
        if pm.channel_serial:
            ch.serial = pm.channel_serial
        resumed = pm.has(Flag.RESUMED)
        ch.granted = pm.flags & ~0xFFFF
        if ch.state in (ChannelState.ATTACHING, ChannelState.SUSPENDED):
            # A late ATTACHED after our attach timed out (SUSPENDED) completes the attach, as in
            # ably-js: ignoring it while its messages are discarded (yet their channelSerial
            # stored, RTL15b) would skip them silently on the next attach.
            ch.attach_deadline = None
            ch.resumed = resumed
            self._channel_state(ch, ChannelState.ATTACHED, reason=pm.error, resumed=resumed)
        elif ch.state is ChannelState.ATTACHED and not resumed:
            ch.resumed = False
            self._emit_channel(ch, ChannelState.ATTACHED, reason=pm.error, resumed=False, update=True)
        elif ch.state is ChannelState.DETACHING:
            self._out.append(ProtocolMessage(action=Action.DETACH, channel=ch.name))  # RTL5i
        presence.on_attached(self, ch, resumed)  # RTP17i

    def handle_detached(self, now: float, pm: ProtocolMessage) -> None:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return
        if ch.state is ChannelState.DETACHING:
            ch.serial = None  # RTL15b1
            self._channel_state(ch, ChannelState.DETACHED, reason=pm.error)
        elif ch.state is ChannelState.ATTACHED:
            # RTL13a: a server-initiated DETACHED re-attaches at once.
            self._channel_state(ch, ChannelState.ATTACHING, reason=pm.error)
            self._send_attach(now, ch)
        elif ch.state is ChannelState.ATTACHING:
            ch.attach_deadline = None
            self._channel_state(ch, ChannelState.SUSPENDED, reason=pm.error)

    def handle_message(self, now: float, pm: ProtocolMessage) -> None:
        ch = self.channels.get(pm.channel or "")
        if ch is None:
            return
        if pm.channel_serial:
            ch.serial = pm.channel_serial  # RTL15b: stored before the state check
        if ch.state is not ChannelState.ATTACHED:
            return  # RTL17
        for index, raw in enumerate(pm.messages or ()):
            # TM2a: fill id, connectionId and timestamp from the ProtocolMessage.
            if raw.get("id") is None and pm.id is not None:
                raw = {**raw, "id": f"{pm.id}:{index}"}
            if raw.get("connectionId") is None and pm.connection_id is not None:
                raw = {**raw, "connectionId": pm.connection_id}
            if raw.get("timestamp") is None and pm.timestamp is not None:
                raw = {**raw, "timestamp": pm.timestamp}
            self._events.append(MessageReceived(channel=ch.name, message=raw,
                                                channel_serial=pm.channel_serial))

    # ----------------------------------------------------------------- helpers

    def _apply_details(self, details: dict[str, Any]) -> None:
        self.details = details
        ttl = details.get("connectionStateTtl")
        if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
            self._ttl_s = ttl / 1000
        idle = details.get("maxIdleInterval")
        if isinstance(idle, int) and not isinstance(idle, bool) and idle >= 0:
            self._max_idle_s = idle / 1000

    def _idle_deadline(self) -> float:
        return self._last_activity + self._max_idle_s + self.config.request_timeout

    def _suspend_after(self) -> float:
        return self.config.connection_state_ttl or self._ttl_s

    def _retry_delay(self) -> float:
        if self.state is ConnectionState.SUSPENDED:
            return self.config.suspended_retry
        return self.config.backoff.delay(self._attempt, self._rng)

    def _check_suspend(self, now: float) -> None:
        if self._disconnected_since is None or now < self._disconnected_since + self._suspend_after():
            return
        if self.state is ConnectionState.CONNECTING:
            self._drop(None)
        reason = ErrorInfo.of(ErrorCode.CONNECTION_SUSPENDED, "Connection to server unavailable")
        self._disconnected_since = None
        self._out.clear()
        self.error_reason = reason
        self._set_state(ConnectionState.SUSPENDED, reason=reason)
        self._reconnect_at = now + self.config.suspended_retry
        self._fail_pending(reason)  # RTN7e
        for ch in self.channels.values():
            if ch.state in (ChannelState.ATTACHED, ChannelState.ATTACHING):
                ch.attach_deadline = None
                self._channel_state(ch, ChannelState.SUSPENDED, reason=reason)

    def _send_pending(self, entry: _Pending) -> None:
        if entry.msg_serial is None:
            entry.msg_serial = self.msg_serial
            self.msg_serial += 1
        self._out.append(entry.frame())

    def _send_attach(self, now: float, ch: ChannelRecord) -> None:
        ch.attach_deadline = now + self.config.request_timeout
        self._out.append(ProtocolMessage(action=Action.ATTACH, channel=ch.name, channel_serial=ch.serial,
                                         flags=ch.modes, params=ch.params))

    def _complete(self, pm: ProtocolMessage, *, nack: bool) -> None:
        if pm.msg_serial is None:
            return
        start, count = pm.msg_serial, pm.count if pm.count is not None else 1
        end = start + count
        res = pm.res or []
        while self._pending:
            head = self._pending[0]
            if head.msg_serial is None or head.msg_serial >= end:
                break
            self._pending.pop(0)
            if nack:
                reason = pm.error or ErrorInfo.of(ErrorCode.INTERNAL_CHANNEL, "publish NACKed")
                self._events.append(PublishFailed(token=head.token, reason=reason))
                continue
            index = head.msg_serial - start
            serials: list[str | None] = []
            if 0 <= index < len(res) and isinstance(res[index], dict):
                raw = res[index].get("serials")
                if isinstance(raw, list):
                    serials = [s if isinstance(s, str) else None for s in raw]
            self._events.append(PublishAcked(token=head.token, serials=serials))

    def _fail_pending(self, reason: ErrorInfo) -> None:
        pending, self._pending = self._pending, []
        for entry in pending:
            self._events.append(PublishFailed(token=entry.token, reason=reason, nacked=False))

    def _terminate(self, state: ConnectionState, reason: ErrorInfo | None) -> None:
        self._out.clear()
        self.error_reason = reason
        self._set_state(state, reason=reason)
        fail = reason or ErrorInfo.of(ErrorCode.CONNECTION_CLOSED, "connection closed")
        self._fail_pending(fail)
        channel_state = ChannelState.FAILED if state is ConnectionState.FAILED else ChannelState.DETACHED
        for ch in self.channels.values():
            ch.attach_deadline = None
            if ch.state not in (ChannelState.INITIALIZED, ChannelState.DETACHED, ChannelState.FAILED):
                self._channel_state(ch, channel_state, reason=reason)
        self._connect_deadline = self._reconnect_at = self._disconnected_since = None
        if state is ConnectionState.CLOSED:
            self.connection_key = None

    def _drop(self, reason: ErrorInfo | None) -> None:
        self._events.append(TransportDropped(reason=reason))

    def _set_state(self, state: ConnectionState, *, reason: ErrorInfo | None = None,
                   resumed: bool = False) -> None:
        previous, self.state = self.state, state
        if previous is state and state is not ConnectionState.CONNECTED:
            return
        self._events.append(ConnectionEvent(state=state, previous=previous, connection_id=self.connection_id,
                                            resumed=resumed, reason=reason))

    def _channel_state(self, ch: ChannelRecord, state: ChannelState, *, reason: ErrorInfo | None = None,
                       resumed: bool = False) -> None:
        if ch.state is state:
            return
        self._emit_channel(ch, state, reason=reason, resumed=resumed)

    def _emit_channel(self, ch: ChannelRecord, state: ChannelState, *, reason: ErrorInfo | None,
                      resumed: bool, update: bool = False) -> None:
        previous, ch.state = ch.state, state
        ch.reason = reason
        self._events.append(ChannelEvent(channel=ch.name, state=state, previous=previous, resumed=resumed,
                                         reason=reason, update=update))

    def _check_live(self) -> None:
        if self.state is ConnectionState.FAILED:
            raise ConnectionFailedError("connection failed", self.error_reason)
        if self.state in (ConnectionState.CLOSED, ConnectionState.CLOSING):
            raise ConnectionClosedError("connection closed", self.error_reason)

    def _check_publishable(self) -> None:
        self._check_live()
        if self.state is ConnectionState.SUSPENDED:
            raise ConnectionSuspendedError("connection suspended", self.error_reason)


_HANDLERS = {
    Action.HEARTBEAT: ClientSession.handle_heartbeat,
    Action.ACK: ClientSession.handle_ack,
    Action.NACK: ClientSession.handle_nack,
    Action.CONNECTED: ClientSession.handle_connected,
    Action.DISCONNECTED: ClientSession.handle_disconnected,
    Action.CLOSED: ClientSession.handle_closed,
    Action.ERROR: ClientSession.handle_error,
    Action.ATTACHED: ClientSession.handle_attached,
    Action.DETACHED: ClientSession.handle_detached,
    Action.MESSAGE: ClientSession.handle_message,
    **presence.HANDLERS,
}


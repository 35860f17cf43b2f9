"""PubSub: the channel half of the node's client protocol (attach, detach, publish, fan-out).

The node builds one ``PubSub`` with its ``ChannelModes`` and ``StoreAttach`` and hands it the
channel actions; it reads the node's sessions, transports and subscribers and calls the node
through ``PubSubHost``. ATTACH resolves through the ChannelService (locally or at a remote
home) and completes in one synchronous step: ATTACHED, the replay, then registration for live
traffic (RTL4c1, RTL15b), so nothing can interleave; modes changed later are ``channel_modes``'s.
MESSAGE is checked (capability, size, clientId, message actions: 40160, 40009, 40012, 40000),
stamped (TM2: ``connId:msgSerial:index`` ids, connectionId, clientId, timestamp) and handed to the
home; its ACK or NACK goes out in msgSerial order (RTN7).
Fan-out queues one shared ``Encoded`` on every subscribing transport. Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from frontend.auth import allows
from frontend.channel_log import Entry, epoch_born, parse_rewind_cursor, parse_serial
from frontend.channel_modes import LIVE_MODES, PRESENCE_SUBSCRIBE_BIT, SUBSCRIBE_BIT
from frontend.channel_params import ParamError, parse_attach_params
from frontend.channel_rules import (
    DEFAULT_MODES,
    channel_name_problem,
    message_action_problem,
    modes_param,
    unsupported_qualifier,
)
from frontend.channel_rules import (
    MAX_CHANNEL_NAME as MAX_CHANNEL_NAME,  # re-exported: frontend.rest.publish reads it here
)
from frontend.channels import AttachResult, ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.peerops import Publish
from frontend.replay import coalesce_replay
from frontend.session import ChannelCursor, Session
from kernel import protocol as P
from kernel.errors import ErrorCode, ErrorInfo, RemoteProtocolError
from kernel.protocol import Action, Encoded, Flag, ProtocolMessage, message_size

if TYPE_CHECKING:
    from frontend.channel_modes import ChannelModes
    from frontend.node_parts import Outlet, OwnershipPart
    from frontend.presence import Presence
    from frontend.store_attach import StoreAttach

log = structlog.get_logger("continuity.frontend")


def server_message(action: Action, **fields: Any) -> Encoded:
    """A server-to-client ProtocolMessage, ready to queue on any outlet."""
    return Encoded.of(ProtocolMessage(action=action, **fields))


_payload_size = message_size  # kernel.protocol: one count for the server and the SDK
_ACK = int(Action.ACK)




class PubSubHost(Protocol):
    """What ``PubSub`` reads and calls on its host (``FrontendNode``)."""

    @property
    def config(self) -> FrontendConfig: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def channels(self) -> ChannelService: ...

    @property
    def ownership(self) -> OwnershipPart: ...

    @property
    def presence(self) -> Presence: ...

    @property
    def sessions(self) -> dict[str, Session]: ...

    @property
    def outlets(self) -> dict[str, Outlet]: ...

    @property
    def subscribers(self) -> dict[str, dict[str, Session]]: ...

    def _send(self, now_ms: int, s: Session, frame: Encoded) -> bool: ...

    def cut(self, now_ms: int, s: Session, error: ErrorInfo) -> None: ...

    def _unsubscribe(self, s: Session, name: str) -> None: ...


class PubSub:
    """The node's channel operations: attach, detach, publish, fan-out and ACKs."""

    def __init__(self, host: PubSubHost, modes: ChannelModes, store_attach: StoreAttach) -> None:
        self.host = host
        self.modes = modes
        self.store_attach = store_attach

    def channel_error(
        self, now_ms: int, s: Session, action: Action, name: str, code: ErrorCode, msg: str
    ) -> None:
        self.host.metrics.errors_sent.labels(code=str(int(code))).inc()
        self.host._send(now_ms, s, server_message(action, channel=name, error=ErrorInfo.of(code, msg)))

    def handle_attach(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """RTL4: answer ATTACHED; resume from the client's channelSerial when covered (RTL15b)."""
        name = pm.channel
        if name is None:
            raise RemoteProtocolError("ATTACH needs a channel")
        # Refusals in the channel's scope (RTL14): the channel fails, the connection lives.
        problem = channel_name_problem(name)
        if problem is not None:
            self.channel_error(now_ms, s, Action.ERROR, name, ErrorCode.INVALID_CHANNEL_NAME, problem)
            return
        problem = unsupported_qualifier(name)
        if problem is not None:
            log.info("channel.refused", connection_id=s.connection_id, channel=name, reason=problem)
            self.channel_error(now_ms, s, Action.ERROR, name, ErrorCode.BAD_REQUEST, problem)
            return
        if pm.channel_problem is not None:
            self.channel_error(now_ms, s, Action.ERROR, name, ErrorCode.BAD_REQUEST, pm.channel_problem)
            return
        cap = s.identity.capability
        if not any(allows(cap, name, op) for op in ("subscribe", "publish", "presence")):
            self.channel_error(
                now_ms,
                s,
                Action.ERROR,
                name,
                ErrorCode.CAPABILITY_DENIED,
                f"channel denied access based on capability: {name}",
            )
            return
        cur = s.channels.get(name)
        if cur is None and len(s.channels) >= self.host.config.max_channels_per_connection:
            self.channel_error(
                now_ms,
                s,
                Action.ERROR,
                name,
                ErrorCode.RATE_LIMITED,
                f"at most {self.host.config.max_channels_per_connection} channels per connection",
            )
            return
        requested: int = (pm.flags & P.MODE_FLAGS) or DEFAULT_MODES
        try:
            requested = modes_param(pm.params) or requested  # the ``modes`` param wins, as in Ably
        except ValueError as exc:
            self.channel_error(now_ms, s, Action.ERROR, name, ErrorCode.BAD_REQUEST, str(exc))
            return
        try:
            attach_params = parse_attach_params(pm.params, now_ms)
        except ParamError as exc:
            log.info("channel.params_refused", connection_id=s.connection_id, channel=name, reason=str(exc))
            self.channel_error(now_ms, s, Action.ERROR, name, ErrorCode.BAD_REQUEST, str(exc))
            return
        params = attach_params.echoed  # echoed in ATTACHED (the SDK's channel.params)
        notice = None  # params Ably does not document: the channel attaches, and ATTACHED says so
        if (unknown := attach_params.unknown_params_error()) is not None:
            log.info("channel.params_unknown", connection_id=s.connection_id, channel=name, reason=unknown)
            self.host.metrics.errors_sent.labels(code=str(int(ErrorCode.BAD_REQUEST))).inc()
            notice = ErrorInfo.of(ErrorCode.BAD_REQUEST, unknown)
        granted = self.modes.granted(s, name, requested)
        if cur is not None and cur.attached_gen == s.generation:
            # Already attached on this transport: everything up to the cursor is queued. A re-attach
            # may change the modes (RTL16a, setOptions): they take effect now.
            cur.requested = requested
            self.modes.apply(s, name, cur, granted)
            self.host._send(
                now_ms,
                s,
                server_message(
                    Action.ATTACHED,
                    channel=name,
                    channel_serial=cur.serial,
                    flags=granted | Flag.RESUMED,
                    error=notice,
                    params=params,
                ),
            )
            return
        from_serial = pm.channel_serial or (cur.serial if cur is not None else None)
        generation = s.generation

        # A rewind applies to a fresh attach only, never to one resuming (ATTACH_RESUME, RTL4j). It
        # travels to the home as a replay cursor (channel_params.py), so the attach stays atomic.
        fresh = from_serial is None and not pm.flags & Flag.ATTACH_RESUME
        if fresh and attach_params.rewind_cursor is not None:
            from_serial = attach_params.rewind_cursor

        def gone() -> bool:
            # The transport that asked is gone (its successor will ATTACH again), or the session
            # itself was replaced: handed over and taken back is a new Session under the same
            # connectionId, whose transport never asked (chaos seed 25705, t 163 s: duplicated 31).
            return (
                s.generation != generation
                or self.host.sessions.get(s.connection_id) is not s
                or self.host.outlets.get(s.connection_id) is None
            )

        def done(res: AttachResult) -> None:
            if gone():
                return
            if not self.store_attach.attach_from_store(name, from_serial, res, finish):
                finish(res)

        def finish(res: AttachResult) -> None:
            if gone():
                return
            now = self.host.channels.now_ms
            held = s.channels.get(name)
            if held is not None and held.attached_gen == s.generation:
                # A repeated ATTACH (the client's attach timer fired while a remote home or the
                # store answered) completed first: its replay is queued, so never replay twice.
                resumed = granted | Flag.RESUMED
                attached = server_message(
                    Action.ATTACHED,
                    channel=name,
                    channel_serial=held.serial,
                    flags=resumed,
                    error=notice,
                    params=params,
                )
                self.host._send(now, s, attached)
                return
            rewind = parse_rewind_cursor(from_serial) if from_serial else None
            if rewind is None:
                self._complete_attach(
                    now, s, name, (requested, granted), from_serial, res, params, notice=notice
                )
                return
            replay = res.replay or []
            if not replay:  # nothing retained to rewind: attach from now
                fresh_res = AttachResult(res.last_serial, None)
                self._complete_attach(
                    now, s, name, (requested, granted), None, fresh_res, params, notice=notice
                )
                return
            # ATTACHED's channelSerial is the point just before the first rewound message, so
            # history(untilAttach) pages back from exactly there (no gap, no overlap).
            epoch = str(replay[0].frame.wire["channelSerial"]).rpartition(":")[0]
            start = f"{epoch}:{replay[0].first_seq - 1}"
            self._complete_attach(
                now, s, name, (requested, granted), start, res, params, rewinding=True, notice=notice
            )

        self.host.channels.attach(now_ms, name, from_serial, done)

    def _complete_attach(
        self,
        now_ms: int,
        s: Session,
        name: str,
        modes: tuple[int, int],
        from_serial: str | None,
        res: AttachResult,
        params: dict[str, str] | None = None,
        *,
        rewinding: bool = False,
        notice: ErrorInfo | None = None,
    ) -> None:
        """Queue ATTACHED, the replay and live registration in one synchronous step (RTL4c1, RTL15b).
        ``modes`` is (asked for, granted); ``notice``: an ErrorInfo the ATTACHED carries unless
        continuity was lost (unknown params)."""
        requested, granted = modes
        if res.error is not None:
            self.host._send(now_ms, s, server_message(Action.DETACHED, channel=name, error=res.error))
            return
        replay = res.replay
        error = notice
        if from_serial and replay is None:
            error = ErrorInfo.of(
                ErrorCode.CONTINUITY_LOST,
                f"unable to recover channel {name} from serial {from_serial}: continuity lost",
            )
            self.host.metrics.discontinuities.inc()
        resumed = replay is not None and not rewinding  # a rewind replays on a fresh attach
        # RTP1: the set at the attach point follows the replay as SYNC pages, flagged HAS_PRESENCE.
        sync = (
            self.host.presence.sync_frames(name, res.presence, res.last_serial)
            if granted & Flag.PRESENCE_SUBSCRIBE
            else []
        )
        flags = granted | (Flag.RESUMED if resumed else 0) | (Flag.HAS_PRESENCE if sync else 0)
        if rewinding and replay:
            flags |= Flag.HAS_BACKLOG  # the client is told that a rewind's messages follow
        serial = from_serial if resumed or rewinding else res.last_serial
        if not self.host._send(
            now_ms,
            s,
            server_message(
                Action.ATTACHED, channel=name, channel_serial=serial, flags=flags, error=error, params=params
            ),
        ):
            return
        subscribing = bool(granted & LIVE_MODES)
        last = res.last_serial
        outlet = self.host.outlets.get(s.connection_id)
        if outlet is None:
            return
        if replay and subscribing:
            last = str(replay[-1].frame.wire.get("channelSerial", last))
            own = None if s.echo else s.connection_id
            sent = 0
            for frame, count in coalesce_replay(
                name,
                replay,
                skip_publisher=own,
                messages=bool(granted & Flag.SUBSCRIBE),
                presence=bool(granted & Flag.PRESENCE_SUBSCRIBE),
            ):
                outlet.send(frame, force=True)
                sent += count
            self.host.metrics.replays.inc()
            self.host.metrics.replayed_messages.inc(sent)
            if s.resumed_ms is not None:
                self.host.metrics.resume_catch_up_seconds.observe(max(0, now_ms - s.resumed_ms) / 1000)
        if sync:
            for frame in sync:
                outlet.send(frame, force=True)
        # The name interned: every session attached to the channel shares one string.
        s.channels[sys.intern(name)] = ChannelCursor(granted, last, s.generation, requested)
        if subscribing:
            self.host.subscribers.setdefault(name, {})[s.connection_id] = s
        self.host.ownership.replicate(s)
        log.info(
            "channel.attached",
            connection_id=s.connection_id,
            channel=name,
            resumed=resumed,
            serial=serial,
            lost=error is not None,
        )

    def notify_lost(
        self, now_ms: int, channel: str, last_serial: str, presence: list[P.Message] | None = None,
        why: str = "",
    ) -> None:
        """The channel's history is gone (both copies): tell every local subscriber (RTL12, 90003).

        The presence set at ``last_serial`` follows as a SYNC (HAS_PRESENCE): an SDK re-syncs its
        members on a non-resumed ATTACHED, and without the flag it would clear them (RTP19a)."""
        error = ErrorInfo.of(
            ErrorCode.CONTINUITY_LOST, f"channel {channel} lost its history; continuity lost"
        )
        sync = self.host.presence.sync_frames(channel, presence, last_serial)
        subs = list(self.host.subscribers.get(channel, {}).values())
        log.warning("channel.continuity_lost", channel=channel, serial=last_serial, why=why,
                    subscribers=len(subs))  # fmt: skip
        for sub in subs:
            self._send_lost(now_ms, sub, channel, last_serial, error, sync)

    def _send_lost(
        self, now_ms: int, sub: Session, channel: str, serial: str, error: ErrorInfo, sync: list[Encoded]
    ) -> None:
        cur = sub.channels[channel]
        cur.serial = serial
        self.host.metrics.discontinuities.inc()
        pages = sync if cur.modes & Flag.PRESENCE_SUBSCRIBE else []
        flags = cur.modes | (Flag.HAS_PRESENCE if pages else 0)
        attached = server_message(
            Action.ATTACHED, channel=channel, channel_serial=serial, flags=flags, error=error
        )
        if self.host._send(now_ms, sub, attached):
            for frame in pages:
                self.host._send(now_ms, sub, frame)

    def handle_detach(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        name = pm.channel
        if name is None:
            raise RemoteProtocolError("DETACH needs a channel")
        self.host.presence.leave_now(now_ms, s, name)  # RTP5a: a detach leaves the connection's members
        s.channels.pop(name, None)
        self.host._unsubscribe(s, name)
        self.host.ownership.replicate(s)
        self.host._send(now_ms, s, server_message(Action.DETACHED, channel=name))
        log.info("channel.detached", connection_id=s.connection_id, channel=name)

    # -- publish ----------------------------------------------------------

    def handle_unsupported_publish(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        if pm.msg_serial is None:
            raise RemoteProtocolError(f"{pm.action.name} needs a msgSerial")
        item = s.acks.add(pm.msg_serial)
        s.acks.complete(
            item,
            error=ErrorInfo.of(
                ErrorCode.BAD_REQUEST, f"{pm.action.name.lower()} is not supported by this server"
            ),
        )
        self.flush_acks(now_ms, s)

    def _publish_error(self, s: Session, pm: ProtocolMessage) -> ErrorInfo | None:
        name = pm.channel
        if name is None:
            return ErrorInfo.of(ErrorCode.BAD_REQUEST, "MESSAGE needs a channel")
        problem = channel_name_problem(name)
        if problem is not None:
            return ErrorInfo.of(ErrorCode.INVALID_CHANNEL_NAME, problem)
        if not pm.messages:
            return ErrorInfo.of(ErrorCode.BAD_REQUEST, "MESSAGE needs at least one message")
        refused = unsupported_qualifier(name) or message_action_problem(pm.messages)
        if refused is not None:
            return ErrorInfo.of(ErrorCode.BAD_REQUEST, refused)
        cur = s.channels.get(name)
        if not allows(s.identity.capability, name, "publish") or (
            cur is not None and not cur.modes & Flag.PUBLISH
        ):
            return ErrorInfo.of(ErrorCode.CAPABILITY_DENIED, f"permission denied to publish on {name}")
        size = sum(_payload_size(m) for m in pm.messages)
        if size > self.host.config.max_message_size:
            return ErrorInfo.of(
                ErrorCode.MAX_MESSAGE_SIZE_EXCEEDED,
                f"message size {size} exceeds the maximum of {self.host.config.max_message_size}",
            )
        for m in pm.messages:
            if not s.may_publish_as(m.get("clientId")):
                return ErrorInfo.of(
                    ErrorCode.INVALID_CLIENT_ID,
                    f"message clientId {m.get('clientId')!r} does not match the connection's",
                )
        return None

    def handle_message(self, now_ms: int, s: Session, pm: ProtocolMessage) -> None:
        """RTL6/RTN7: stamp, have the home append and replicate, fan out, then ACK in order with ``res``."""
        if pm.msg_serial is None:
            raise RemoteProtocolError("MESSAGE needs a msgSerial")
        self.host.metrics.messages_in.inc(len(pm.messages or ()))
        item = s.acks.add(pm.msg_serial, now_ms)
        error = self._publish_error(s, pm)
        if error is not None:
            log.info(
                "publish.refused",
                connection_id=s.connection_id,
                channel=pm.channel,
                code=error.code,
                reason=error.message,
            )
            s.acks.complete(item, error=error)
            self.flush_acks(now_ms, s)
            return
        assert pm.channel is not None and pm.messages is not None
        known = s.numbered.get(pm.msg_serial)
        if known is not None:
            # Re-sent after a transport change whose ACK never reached the client: answered from the
            # session, whose memory outlives the home's dedupe record (chaos seed 259956562: a Comet
            # client cut as a slow consumer noticed 17 s later and re-sent a publish numbered 31 s
            # before, past the 21 s window, and it was numbered twice).
            self.host.metrics.duplicates.inc()
            if isinstance(known, ErrorInfo):
                s.acks.complete(item, error=known)  # refused for certain before: the same NACK
            else:
                s.acks.complete(item, serials=list(known))
            self.flush_acks(now_ms, s)
            return
        acks, msg_serial = s.acks, pm.msg_serial
        if how := s.saw_publish(msg_serial):  # a re-send the previous owner may still be numbering
            self.host.channels.mark_resent(now_ms, s.connection_id, pm.channel, msg_serial, how)

        def done(serials: list[str] | None, err: ErrorInfo | None) -> None:
            answer = serials if serials is not None else err
            if answer is not None:
                s.remember_numbered(msg_serial, answer)
            acks.complete(item, serials=serials, error=err)
            if s.acks is acks:  # else the transport changed: the client re-sends, dedupe answers
                self.flush_acks(self.host.channels.now_ms, s)

        self.publish(now_ms, s, pm.channel, pm.msg_serial, pm.messages, done)

    def publish(
        self,
        now_ms: int,
        s: Session,
        channel: str,
        msg_serial: int,
        messages: list[P.Message],
        done: Callable[[list[str] | None, ErrorInfo | None], None],
    ) -> None:
        """Stamp ``messages`` (TM2) and hand them to the channel's home; ``done(serials, error)``."""
        conn = s.connection_id
        stamped = []
        for i, m in enumerate(messages):
            out = {k: v for k, v in m.items() if v is not None and k != "connectionKey"}
            out.setdefault("id", f"{conn}:{msg_serial}:{i}")
            out["connectionId"] = conn
            if "clientId" not in out and s.client_id not in (None, "*"):
                out["clientId"] = s.client_id
            out.setdefault("timestamp", now_ms)
            stamped.append(out)
        envelope = {
            "action": int(Action.MESSAGE),
            "channel": channel,
            "id": f"{conn}:{msg_serial}",
            "connectionId": conn,
            "timestamp": now_ms,
        }
        pub = Publish(
            channel=channel, connection_id=conn, msg_serial=msg_serial, messages=stamped, envelope=envelope
        )
        self.host.channels.publish(now_ms, pub, done)

    def fan_out(self, now_ms: int, channel: str, entry: Entry, publisher: str | None) -> None:
        """Queue one shared frame on every subscribing transport of ``channel``."""
        subs = self.host.subscribers.get(channel)
        if not subs:
            return
        frame = entry.frame
        serial = frame.wire["channelSerial"]
        presence = entry.is_presence  # presence goes to PRESENCE_SUBSCRIBE, whatever the echo setting
        epoch = serial.rpartition(":")[0]
        follows = f"{epoch}:{entry.first_seq - 1}"  # the cursor of a subscriber that is up to date
        slow: list[Session] = []
        delivered = 0
        for sub in list(subs.values()):
            cur = sub.channels[channel]
            # An up-to-date cursor (the common case) is not parsed: nothing below applies to it.
            held = parse_serial(cur.serial) if cur.serial and cur.serial != follows else None
            if held is not None and held[0] == epoch and held[1] < entry.first_seq - 1:
                # Behind in the epoch (a new home's catch-up still on its way): gaps first (sim 6622).
                for gap in self.host.channels.missed_at_home(channel, str(cur.serial), entry.first_seq - 1):
                    self.fan_out(now_ms, channel, gap, gap.publisher)
                held = parse_serial(cur.serial) if cur.serial else None
            if cur.serial != follows and _already_has(cur.serial, epoch, entry.first_seq):
                # Its attach replay already gave it this entry (a stream catching up behind a
                # client's own replay): exactly once means never twice.
                self.host.metrics.duplicates_suppressed.inc()
                continue
            if held is not None and held[0] != epoch:
                if epoch_born(epoch) < epoch_born(held[0]):
                    continue  # an older epoch than the subscriber's: never move it backwards
                # A new epoch reached this subscriber before its re-attach said so (frontend.sim
                # seed 5476: a home acquired fresh fanned out before the retried attach ran): the
                # discontinuity is announced first, never silent.
                lost = ErrorInfo.of(
                    ErrorCode.CONTINUITY_LOST, f"channel {channel} lost its history; continuity lost"
                )
                log.warning("channel.continuity_lost", channel=channel, serial=follows, subscribers=1,
                            why=f"a new epoch reached {sub.connection_id} before its re-attach")  # fmt: skip
                self._send_lost(now_ms, sub, channel, follows, lost, [])
            cur.serial = serial
            sub.dirty = True
            if presence:
                if not cur.modes & PRESENCE_SUBSCRIBE_BIT:
                    continue
            elif (publisher == sub.connection_id and not sub.echo) or not cur.modes & SUBSCRIBE_BIT:
                continue
            outlet = self.host.outlets.get(sub.connection_id)
            if outlet is None:
                continue
            if outlet.send(frame):
                delivered += 1
            else:
                slow.append(sub)
        self.host.metrics.messages_out.inc(delivered * entry.count)
        if delivered:
            self.host.metrics.publish_deliver_seconds.observe(max(0, now_ms - entry.timestamp_ms) / 1000)
        for sub in slow:
            self.host.metrics.slow_consumers.inc()
            log.info("connection.slow_consumer", connection_id=sub.connection_id, channel=channel)
            self.host.cut(
                now_ms,
                sub,
                ErrorInfo.of(ErrorCode.SLOW_CONSUMER, "client too slow: outbox full; resume to continue"),
            )

    def flush_acks(self, now_ms: int, s: Session) -> None:
        runs = s.acks.release()
        for added_ms in s.acks.take_released_times():
            self.host.metrics.publish_ack_seconds.observe(max(0, now_ms - added_ms) / 1000)
        for msg_serial, count, res, error in runs:
            if error is not None:
                self.host.metrics.nacks.labels(code=str(error.code)).inc()
                self.host._send(
                    now_ms, s, server_message(Action.NACK, msg_serial=msg_serial, count=count, error=error)
                )
            else:  # the wire mapping itself: one ACK per publish at max rate, no ProtocolMessage
                ack = {"action": _ACK, "count": count, "msgSerial": msg_serial, "res": res}
                self.host._send(now_ms, s, Encoded(ack))


def _already_has(cursor: str | None, epoch: str, first_seq: int) -> bool:
    """Whether a subscriber whose channel cursor is ``cursor`` has seq ``first_seq`` of ``epoch``."""
    parsed = parse_serial(cursor) if cursor else None
    return parsed is not None and parsed[0] == epoch and parsed[1] >= first_seq

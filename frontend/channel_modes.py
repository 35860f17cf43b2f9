"""Channel modes: what a connection may do on each attached channel, and their changes after attach.

The node builds one ``ChannelModes``; ``PubSub`` asks it what an ATTACH is granted and to apply new
modes, the node to apply a new capability. It reaches the node through ``ModesHost``. A channel
cursor keeps the modes asked for at attach (the ATTACH flags, or the ``modes`` param) and those
granted: the asked ones that the capability allows. Both change on an attached channel two ways: a
re-attach with new modes (RTL16a, ``setOptions``), and a reauth (RTN22) that changes the capability,
after which every cursor's asked modes are granted anew, so a narrower capability drops modes (and
fails the channels it no longer allows at all, 40160 in the channel's scope, RTL14) and a wider one
grants them again.

Granting subscribe (or presence_subscribe) registers the session for live traffic; taking the last
of them away unregisters it, and the last local subscriber gone stops this frontend's stream from a
remote home. So a subscribe granted again on a channel homed elsewhere first rejoins that stream at
the home's current serial, and registers the session once it answers: from then on it gets every
message, and, as on a channel homed here, nothing of what was published while it lacked the mode.
Pure: ``now_ms`` comes in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import structlog

from frontend.auth import allows
from frontend.channels import AttachResult, ChannelService
from frontend.session import ChannelCursor, Session
from kernel.errors import ErrorCode
from kernel.protocol import Action, Encoded, Flag, ProtocolMessage

if TYPE_CHECKING:
    from frontend.node_parts import OwnershipPart

log = structlog.get_logger("continuity.frontend")

# Either mode registers a session for live traffic; fan-out then sends it messages (SUBSCRIBE) and
# presence events (PRESENCE_SUBSCRIBE) by its modes, as _complete_attach registers it.
LIVE_MODES = Flag.SUBSCRIBE | Flag.PRESENCE_SUBSCRIBE
# Plain ints for the per-delivery mode tests (an IntFlag operand goes through enum's __and__).
SUBSCRIBE_BIT = int(Flag.SUBSCRIBE)
PRESENCE_SUBSCRIBE_BIT = int(Flag.PRESENCE_SUBSCRIBE)


class ModesHost(Protocol):
    """What ``ChannelModes`` reads and calls on its host (``FrontendNode``)."""

    @property
    def channels(self) -> ChannelService: ...

    @property
    def ownership(self) -> OwnershipPart: ...

    @property
    def subscribers(self) -> dict[str, dict[str, Session]]: ...

    def _send(self, now_ms: int, s: Session, frame: Encoded) -> bool: ...

    def _unsubscribe(self, s: Session, name: str) -> None: ...

    def _channel_error(
        self, now_ms: int, s: Session, action: Action, name: str, code: ErrorCode, msg: str
    ) -> None: ...


class ChannelModes:
    """The modes of the node's attached channels: what each ATTACH is granted, and their changes."""

    def __init__(self, host: ModesHost) -> None:
        self.host = host

    def granted(self, s: Session, name: str, requested: int) -> int:
        cap = s.identity.capability
        granted = requested
        if not allows(cap, name, "publish"):
            granted &= ~Flag.PUBLISH
        if not allows(cap, name, "subscribe"):
            granted &= ~Flag.SUBSCRIBE
        if not allows(cap, name, "annotation-publish"):
            granted &= ~Flag.ANNOTATION_PUBLISH
        if not allows(cap, name, "presence"):
            granted &= ~(Flag.PRESENCE | Flag.PRESENCE_SUBSCRIBE)
        return granted

    def apply(self, s: Session, name: str, cur: ChannelCursor, granted: int) -> None:
        """New modes on an attached channel: subscribe starts or stops delivery, publish is checked
        against them from the next MESSAGE."""
        if cur.modes == granted:
            return
        was_subscribed = bool(cur.modes & LIVE_MODES)
        cur.modes = granted
        if not granted & LIVE_MODES:
            self.host._unsubscribe(s, name)
        elif not was_subscribed:
            self._subscribe_again(s, name, cur)
        self.host.ownership.replicate(s)
        log.info("channel.modes", connection_id=s.connection_id, channel=name, modes=int(granted))

    def _subscribe_again(self, s: Session, name: str, cur: ChannelCursor) -> None:
        """Register ``s`` for live traffic on an attached channel; if this frontend has stopped
        following the channel's remote home, once the stream is back (module docstring)."""
        if cur.attached_gen != s.generation:
            return  # not attached on this transport yet: its ATTACH registers it (_complete_attach)
        svc = self.host.channels
        if name in self.host.subscribers or name in svc.streams or svc.home_of(name) == svc.node_id:
            # Delivery starts from what is fanned out next: what the channel had while this session
            # lacked the subscribe mode is not owed to it (a cursor left behind would be filled).
            cur.serial = svc.fanned_out_serial(name) or cur.serial
            self.host.subscribers.setdefault(name, {})[s.connection_id] = s
            return
        generation = s.generation

        def rejoined(res: AttachResult) -> None:
            changed = s.generation != generation or s.channels.get(name) is not cur
            if changed or not cur.modes & LIVE_MODES:
                return  # the transport, the attachment or the modes changed meanwhile
            now = svc.now_ms
            if res.error is not None:
                # Not served in time: detach it; the SDK attaches again (RTL13a), from its serial.
                s.channels.pop(name, None)
                detached = ProtocolMessage(action=Action.DETACHED, channel=name, error=res.error)
                self.host._send(now, s, Encoded.of(detached))
                return
            cur.serial = res.last_serial
            self.host.subscribers.setdefault(name, {})[s.connection_id] = s

        svc.attach(svc.now_ms, name, None, rejoined)

    def apply_capability(self, now_ms: int, s: Session) -> None:
        """After a reauth (RTN22) changed the capability: a channel it no longer allows fails in its
        own scope (ERROR 40160, RTL14); on the others the modes asked for at attach are granted
        anew, so a narrower capability drops modes and a wider one adds them back."""
        cap = s.identity.capability
        for name, cur in list(s.channels.items()):
            if not any(allows(cap, name, op) for op in ("subscribe", "publish", "presence")):
                s.channels.pop(name, None)
                self.host._unsubscribe(s, name)
                self.host._channel_error(
                    now_ms,
                    s,
                    Action.ERROR,
                    name,
                    ErrorCode.CAPABILITY_DENIED,
                    f"channel denied access based on capability: {name}",
                )
                continue
            self.apply(s, name, cur, self.granted(s, name, cur.requested or cur.modes))
        self.host.ownership.replicate(s)

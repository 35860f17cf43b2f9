"""Presence in the trio SDK (RTP, minimal): send enter/update/leave, surface PRESENCE and SYNC,
re-enter this connection's members (RTP17).

The session hands inbound PRESENCE and SYNC frames here. A PRESENCE frame moves the channel's
serial like a MESSAGE (RTL15b: messages and presence share the channelSerial), so a resume asks
for exactly what followed it; its events, and the members of each SYNC page, are surfaced as
:class:`PresenceEvent` values to ``Channel.presence_subscribe`` feeds. The SDK keeps no map of
the channel's members (the application folds the events), but it does keep the members *this
connection* entered (RTP17b: its own enter/update/present events add or replace one, its own
non-synthesized leave removes it; a server's leave while it was away does not) and, on every
ATTACHED but a RESUMED one on the same connection, enters each of them again (RTP17i, with the
original id when the connection is the same, RTP17g1): after its connection state expired and
a new connectionId, the others see one enter (the server turns an enter of a member already
present into an update).
A re-entry that fails is reported as a channel ``update`` with error 91004 (RTP17e). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from continuity.errors import ClientError
from continuity.events import (
    ChannelEvent,
    ChannelState,
    CoreEvent,
    PresenceEvent,
    PublishAcked,
    PublishFailed,
)
from continuity.records import ChannelRecord
from kernel.errors import ErrorCode, ErrorInfo
from kernel.protocol import Action, ProtocolMessage

ACTIONS = {"absent": 0, "present": 1, "enter": 2, "leave": 3, "update": 4}  # TP2
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}


_OWN_ADDS = frozenset({"enter", "update", "present"})


class _Session(Protocol):
    channels: dict[str, ChannelRecord]
    connection_id: str | None
    _events: list[Any]

    def publish(self, channel: str, messages: list[dict[str, Any]], *, presence: bool = False) -> int: ...


def handle(session: _Session, pm: ProtocolMessage, *, sync: bool) -> None:
    """A PRESENCE (``sync`` False) or SYNC frame for ``pm.channel``."""
    ch = session.channels.get(pm.channel or "")
    if ch is None:
        return
    if not sync and pm.channel_serial:
        ch.serial = pm.channel_serial  # RTL15b, as for MESSAGE
    if ch.state is not ChannelState.ATTACHED:
        return
    last = sync and not (pm.channel_serial or ":").partition(":")[2]
    for raw in pm.presence or ():
        action = raw.get("action")
        _track_own(session, ch, raw, ACTION_NAMES.get(action) if isinstance(action, int) else None, pm)
        session._events.append(
            PresenceEvent(
                channel=ch.name,
                action=ACTION_NAMES.get(action, str(action)) if isinstance(action, int) else str(action),
                client_id=raw.get("clientId"),
                connection_id=raw.get("connectionId") or pm.connection_id,
                id=raw.get("id"),
                timestamp=raw.get("timestamp") or pm.timestamp,
                data=raw.get("data"),
                channel_serial=pm.channel_serial,
                sync=sync,
                sync_last=last,
            )
        )


def _track_own(
    session: _Session, ch: ChannelRecord, raw: dict[str, Any], action: str | None, pm: ProtocolMessage
) -> None:
    """RTP17b: keep the members this connection entered, from its own events."""
    conn = raw.get("connectionId") or pm.connection_id
    client_id = raw.get("clientId")
    if conn is None or conn != session.connection_id or not isinstance(client_id, str):
        return
    if action in _OWN_ADDS:
        ch.my_members[client_id] = {**raw, "connectionId": conn}
    elif action == "leave" and str(raw.get("id") or "").startswith(conn):  # not a synthesized leave
        ch.my_members.pop(client_id, None)


def on_attached(session: _Session, ch: ChannelRecord, resumed: bool) -> None:
    """RTP17i: after any ATTACHED but a RESUMED one on the connection the channel was attached on
    (after a failed resume the channel's own continuity may hold while its members, the old
    connection's, do not), enter every member this connection entered."""
    if ch.state is not ChannelState.ATTACHED:
        return
    previous, ch.attached_on = ch.attached_on, session.connection_id
    if not resumed or previous != session.connection_id:
        reenter(session, ch)


def reenter(session: _Session, ch: ChannelRecord) -> None:
    """Enter every member this connection entered on ``ch`` again (RTP17g)."""
    for client_id, m in list(ch.my_members.items()):
        wire: dict[str, Any] = {"action": ACTIONS["enter"], "clientId": client_id}
        for key in ("data", "encoding", "extras"):
            if m.get(key) is not None:
                wire[key] = m[key]
        if m.get("id") and m.get("connectionId") == session.connection_id:
            wire["id"] = m["id"]  # RTP17g1: the same connection keeps the member's id
        try:
            ch.reentries.add(session.publish(ch.name, [wire], presence=True))
        except ClientError:
            return  # the connection cannot publish now: the next non-resumed ATTACHED tries again


def reentry_outcomes(session: _Session, events: list[CoreEvent]) -> list[CoreEvent]:
    """Follow each failed re-entry by a channel ``update`` carrying 91004 (RTP17e)."""
    if not any(ch.reentries for ch in session.channels.values()):
        return events
    out: list[CoreEvent] = []
    for event in events:
        out.append(event)
        if not isinstance(event, (PublishAcked, PublishFailed)):
            continue
        for ch in session.channels.values():
            if event.token not in ch.reentries:
                continue
            ch.reentries.discard(event.token)
            if isinstance(event, PublishFailed):
                reason = ErrorInfo.of(
                    ErrorCode.PRESENCE_REENTRY_FAILED,
                    f"automatic re-entry of a presence member of {ch.name} failed: {event.reason.message}",
                )
                out.append(
                    ChannelEvent(
                        channel=ch.name,
                        state=ch.state,
                        previous=ch.state,
                        resumed=ch.resumed,
                        reason=reason,
                        update=True,
                    )
                )
    return out


# The session's handlers for the two presence actions (continuity.session._HANDLERS).
HANDLERS: dict[Action, Callable[[Any, float, ProtocolMessage], None]] = {
    Action.PRESENCE: lambda session, now, pm: handle(session, pm, sync=False),
    Action.SYNC: lambda session, now, pm: handle(session, pm, sync=True),
}

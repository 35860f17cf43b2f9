"""Presence in the trio SDK (RTP, minimal): send enter/update/leave, surface PRESENCE and SYNC.

The session hands inbound PRESENCE and SYNC frames here. A PRESENCE frame moves the channel's
serial like a MESSAGE (RTL15b: messages and presence share the channelSerial), so a resume asks
for exactly what followed it; its events, and the members of each SYNC page, are surfaced as
:class:`PresenceEvent` values to ``Channel.presence_subscribe`` feeds. The SDK keeps no member
map of its own and does no automatic re-entry (RTP17): an application re-enters when it sees a
new connectionId. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from continuity.events import ChannelState, PresenceEvent
from continuity.records import ChannelRecord
from kernel.protocol import Action, ProtocolMessage

ACTIONS = {"absent": 0, "present": 1, "enter": 2, "leave": 3, "update": 4}  # TP2
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}


class _Session(Protocol):
    channels: dict[str, ChannelRecord]
    _events: list[Any]


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


# The session's handlers for the two presence actions (continuity.session._HANDLERS).
HANDLERS: dict[Action, Callable[[Any, float, ProtocolMessage], None]] = {
    Action.PRESENCE: lambda session, now, pm: handle(session, pm, sync=False),
    Action.SYNC: lambda session, now, pm: handle(session, pm, sync=True),
}

"""PresenceSet: one channel's presence members, derived from its log.

Theory of operation
-------------------
Presence events (enter, update, leave) are entries of the channel's numbered log,
like messages: the home numbers them, the replica in the other zone holds them
before the publisher is ACKed, subscribers on every frontend receive them once
each in serial order, and a resumed attach replays the ones it missed. Ably does
the same: messages and presence share the channelSerial.

The *set* is a fold of those entries. Each member is keyed by
``connectionId:clientId`` (RTP2) and holds the latest event that made it present,
stored with action PRESENT. An event replaces a stored member only if it is
*newer* by the SDK's own rule (RTP2b): when either id is synthesized (does not
start with its connectionId, as the server's own leaves do) the later timestamp
wins, ties going to the newcomer; otherwise the higher ``msgSerial``, then the
higher ``index``, of the ``connId:msgSerial:index`` ids. Because the server folds
with the SDK's rule, the set it sends in a SYNC is the set every SDK that saw the
events holds: a SYNC never makes an SDK synthesize a leave for a live member.

The set outlives the log's retention window: the log carries it in its snapshot
(the state at a known seq) when it is copied to a replica or handed to a new
home, and the receiver folds the entries after that seq (``ChannelLog``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import Any

Member = dict[str, Any]


class PresenceAction(enum.IntEnum):
    """PresenceMessage actions (TP2). The numbers are the protocol."""

    ABSENT = 0
    PRESENT = 1
    ENTER = 2
    LEAVE = 3
    UPDATE = 4


CLIENT_ACTIONS = frozenset({PresenceAction.ENTER, PresenceAction.UPDATE, PresenceAction.LEAVE})


def member_key(m: Member) -> str:
    return f"{m.get('connectionId')}:{m.get('clientId')}"


def synthesized(m: Member) -> bool:
    """RTP2b1: an event whose id does not start with its connectionId (e.g. a server leave)."""
    mid, conn = m.get("id"), m.get("connectionId")
    return not isinstance(mid, str) or not isinstance(conn, str) or not mid.startswith(conn)


def _ordering(mid: str) -> tuple[int, int]:
    parts = mid.split(":")
    try:
        return int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return -1, -1


def newer(item: Member, existing: Member) -> bool:
    """RTP2b: whether ``item`` supersedes ``existing`` for the same member."""
    if synthesized(item) or synthesized(existing):
        return int(item.get("timestamp") or 0) >= int(existing.get("timestamp") or 0)
    return _ordering(str(item["id"])) > _ordering(str(existing["id"]))


class PresenceSet:
    """The members of one channel (see the module docstring)."""

    __slots__ = ("_members",)

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._members: dict[str, Member] = {}
        for m in members:
            self._members[member_key(m)] = m

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def get(self, connection_id: str, client_id: str) -> Member | None:
        return self._members.get(f"{connection_id}:{client_id}")

    def apply(self, event: Member) -> bool:
        """Fold one event in; True if the set changed (the SDK would emit it)."""
        try:
            action = PresenceAction(int(event.get("action", -1)))
        except ValueError:
            return False
        key = member_key(event)
        held = self._members.get(key)
        if held is not None and not newer(event, held):
            return False
        if action is PresenceAction.LEAVE:
            return self._members.pop(key, None) is not None
        if action in (PresenceAction.ENTER, PresenceAction.UPDATE, PresenceAction.PRESENT):
            stored = dict(event)
            stored["action"] = int(PresenceAction.PRESENT)
            self._members[key] = stored
            return True
        return False

    def to_wire(self) -> list[Member]:
        return list(self._members.values())

    @classmethod
    def from_wire(cls, raw: object) -> PresenceSet:
        return cls(m for m in raw if isinstance(m, dict)) if isinstance(raw, list) else cls()

    def query(self, client_id: str | None = None, connection_id: str | None = None) -> list[Member]:
        """Members, filtered as ``presence.get({clientId, connectionId})`` filters (RTP11c)."""
        return [
            m
            for m in self._members.values()
            if (client_id is None or m.get("clientId") == client_id)
            and (connection_id is None or m.get("connectionId") == connection_id)
        ]


def sync_pages(members: list[Member], *, max_members: int, max_bytes: int) -> list[list[Member]]:
    """Split a SYNC into pages of at most ``max_members`` members and about ``max_bytes``."""
    pages: list[list[Member]] = []
    page: list[Member] = []
    size = 0
    for m in members:
        cost = 64 + _rough_size(m)
        if page and (len(page) >= max_members or size + cost > max_bytes):
            pages.append(page)
            page, size = [], 0
        page.append(m)
        size += cost
    if page:
        pages.append(page)
    return pages


def _rough_size(m: Member) -> int:
    """A cheap upper-ish estimate of a member's encoded size (exact for string and binary data)."""
    size = 0
    for v in m.values():
        if isinstance(v, (str, bytes, bytearray)):
            size += len(v)
        elif isinstance(v, dict):
            size += 64 + sum(16 + (len(x) if isinstance(x, (str, bytes)) else 16) for x in v.values())
        elif isinstance(v, list):
            size += 64 + sum(16 + (len(x) if isinstance(x, (str, bytes)) else 16) for x in v)
        else:
            size += 8
    return size


class OwnMembers:
    """The members one connection entered, per channel, kept with its connection state.

    ``gone`` says the server left them on the connection's behalf while it was away (the linger
    elapsed): a resume within the TTL then re-enters them, so the client stays present.
    ``hearsay``: ``gone`` came in state another frontend wrote, which may have entered them again
    since: the re-entry enters only those absent from their channel's set (presence_reentry.py).
    """

    __slots__ = ("_channels", "_pending", "gone", "hearsay")

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, Member]] | None = None  # made on first use (``channels``)
        self.gone = False
        self.hearsay = False
        # Members being entered (sent to the channel's home, not yet numbered): the copy lists them
        # too, so a frontend holding it can leave them if this owner dies before its next write.
        self._pending: dict[str, dict[str, Member]] | None = None  # made on first use (``pending``)

    @property
    def channels(self) -> dict[str, dict[str, Member]]:
        """Per channel, the members entered by this connection, by clientId."""
        if self._channels is None:
            self._channels = {}
        return self._channels

    @channels.setter
    def channels(self, value: dict[str, dict[str, Member]]) -> None:
        self._channels = value

    @property
    def pending(self) -> dict[str, dict[str, Member]]:
        if self._pending is None:
            self._pending = {}
        return self._pending

    def has_pending(self) -> bool:
        return bool(self._pending)

    def trim(self) -> None:
        """Drop empty dicts' storage (most connections never enter a member)."""
        if not self._channels:
            self._channels = None
        if not self._pending:
            self._pending = None

    def __bool__(self) -> bool:
        return bool(self._channels)

    def count(self) -> int:
        return sum(len(m) for m in self.channels.values())

    def record(self, channel: str, event: Member) -> None:
        """An event of this connection was committed: remember (or forget) the member."""
        client_id = str(event.get("clientId"))
        if int(event.get("action", -1)) == PresenceAction.LEAVE:
            members = self.channels.get(channel)
            if members is not None:
                members.pop(client_id, None)
                if not members:
                    del self.channels[channel]
        else:
            self.channels.setdefault(channel, {})[client_id] = {
                k: v for k, v in event.items() if k not in ("action", "serial")
            }

    def expect(self, channel: str, events: list[Member]) -> list[Member]:
        """Enters and updates about to be published: the members not held yet become pending
        (returned), so the copy written before the publish already lists them (presence.py)."""
        held = self.channels.get(channel, {})
        leave = PresenceAction.LEAVE
        fresh = [e for e in events if int(e.get("action", -1)) != leave and e["clientId"] not in held]
        for e in fresh:
            self.pending.setdefault(channel, {})[str(e["clientId"])] = e
        return fresh

    def settle(self, channel: str, events: list[Member]) -> None:
        """The publish of ``events`` (from ``expect``) was answered: they are pending no more."""
        pending = self._pending.get(channel) if self._pending is not None else None
        for e in events:
            if pending is not None and pending.get(str(e["clientId"])) is e:
                del pending[str(e["clientId"])]
        if pending is not None and not pending:
            del self.pending[channel]

    def listed(self) -> dict[str, dict[str, Member]]:
        """The members a copy lists: those held, and those being entered."""
        if not self._pending:
            return self.channels
        out = {ch: dict(members) for ch, members in self.channels.items()}
        for ch, members in self.pending.items():
            for client_id, e in members.items():
                out.setdefault(ch, {}).setdefault(
                    client_id, {k: v for k, v in e.items() if k not in ("action", "serial")}
                )
        return out

    def to_wire(self) -> dict[str, Any]:
        return {"channels": self.listed(), "gone": self.gone}

    @classmethod
    def from_wire(cls, raw: object) -> OwnMembers:
        own = cls()
        if isinstance(raw, dict):
            chans = raw.get("channels")
            if isinstance(chans, dict):
                own.channels = {
                    str(ch): {str(c): dict(m) for c, m in members.items() if isinstance(m, dict)}
                    for ch, members in chans.items()
                    if isinstance(members, dict) and members
                }
            own.gone = own.hearsay = bool(raw.get("gone"))
        return own

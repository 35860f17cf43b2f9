"""Re-entry from hearsay: which members a copy says were left are absent from their channels now.

Theory of operation
-------------------
A connection's ``OwnMembers.gone`` says the server left its members while the client was away, so
a resume re-enters them (``Presence.bound``). Set by the owner itself, after its own leaves were
numbered, it is the truth. Read from state another frontend wrote (its secondary's copy, a
handover), it is hearsay: that frontend may have entered the members again after the write (the
client resumed there), and the write may reach a frontend late and be served after newer ones
were written elsewhere. Copies of one ownership epoch carry no order among themselves.

Chaos seed 1688680051 (issue 13, t 98-112 s): fe-b1's linger left sub7, the client resumed on
fe-b1, which re-entered it; while that enter waited for chaos:1's home, fe-b1 moved the copy to
fe-a2 (fe-a1 out of its map) and wrote it there, still "left". The write reached fe-a2 at the
heal, after fe-b1 had its copy on fe-a1 again. fe-b1 killed, the router sent sub7 to fe-a2, whose
takeover adopted that copy and re-entered sub7, present since 103.3 s: 15 observers saw an ENTER
of a member that never left.

So a re-entry from hearsay first reads each channel's set at its home (the fold of the numbered
entries, ``AttachResult.presence``) and enters only the members absent from it. A member found
present keeps the timestamp of the entry that holds it: a server leave numbered later than that
entry (a copy holder's, cut off) is still answered with an enter (``CopyWatches.entry_seen``),
an older one fanned out late is not. Pure: the reads go through ``Channels.attach``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from frontend.channels import AttachResult
from frontend.presence_set import Member, PresenceSet

if TYPE_CHECKING:
    from frontend.node_parts import NodeParts

log = structlog.get_logger("continuity.frontend")

Members = dict[str, dict[str, Member]]  # channel -> clientId -> member


def still_absent(
    node: NodeParts, now_ms: int, conn: str, channels: Members, then: Callable[[Members | None], None]
) -> None:
    """``then`` the members of ``channels`` (connection ``conn``'s) absent from their channel's
    set at its home, or None if a home could not be read (the caller tries again later)."""
    if not channels:
        then({})
        return
    left = len(channels)
    absent: Members = {}
    failed = False

    def read(channel: str, members: dict[str, Member], res: AttachResult) -> None:
        nonlocal left, failed
        left -= 1
        if res.error is not None:
            failed = True
        else:
            held = PresenceSet.from_wire(res.presence)
            present = 0
            for client_id, m in members.items():
                there = held.get(conn, client_id)
                if there is None:
                    absent.setdefault(channel, {})[client_id] = m
                    continue
                present += 1
                m["timestamp"] = max(int(m.get("timestamp") or 0), int(there.get("timestamp") or 0))
            if present:
                log.info("presence.reenter_present", connection_id=conn, channel=channel, n=present)
        if left == 0:
            then(None if failed else absent)

    for channel, members in list(channels.items()):
        got = functools.partial(read, channel, members)
        node.channels.attach(now_ms, channel, None, got, subscribe=False)

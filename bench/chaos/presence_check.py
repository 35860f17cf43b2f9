"""The chaos checker's presence verdicts: no spurious leave or enter, and the final sets agree.

Input: the receive logs ``checker.check`` takes, whose entries also hold (``load.py``)
``{"k": "pres", "t", "serial", "events": [[action, clientId, connectionId], ...]}`` (a PRESENCE
frame), ``{"k": "sync", "t", "member": [clientId, connectionId], "last"}`` (a SYNC member),
``{"k": "entered", "t", "id"}`` (this client entered its member, clientId = its name, under
connection ``id``). Every subscribing client enters one member on its first channel.

Verdicts, per observer (every log that saw presence):

- ``presence_spurious_leave``: a leave of member M (connection C) while M's client had not been
  away from CONNECTED for ``linger_s`` (less ``SLACK_S``) at any time before it, nor left C for
  another connectionId: within the linger, presence is connection state and must not move. Away
  starts when the server lost the transport (a cut of the client's own tunnel, or the frontend's
  ``connection.detached``) if the client then disconnected: it notices only at its idle timer;
- ``presence_spurious_enter``: an enter of a member the observer holds present (no leave since
  its last enter): nothing re-enters a member that never left;
- ``presence_sets_disagree``: at the end, the observers still attached and CONNECTED do not all
  hold the same set of members (each folds its SYNC pages and events as an SDK would).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SLACK_S = 2.0  # timers tick at most every second on both the client and the server side
# How long after the server lost a transport its client may notice: maxIdleInterval plus the SDK's
# realtimeRequestTimeout (10 s), and on a loaded machine the backlog the client still reads from the
# dead path's buffers first (seed 1141510304: sub9 read 15 s of queued messages after rt2's kill).
DETECT_S = 30.0
KINDS = ("presence_spurious_leave", "presence_spurious_enter", "presence_sets_disagree")

Member = tuple[str, str]  # (clientId, connectionId)


def _away_spans(
    entries: Sequence[Mapping[str, Any]],
    cuts: Sequence[tuple[float, float]] = (),
    detached: Mapping[str, Sequence[float]] | None = None,
) -> tuple[list[tuple[float, float]], list[tuple[float, str]]]:
    """(away stretches, (time, new connectionId) switches) of one client. Away: not CONNECTED; and
    from when the server lost the transport, when the client then disconnected without being
    CONNECTED again meanwhile: the ``cuts`` of its own path (a tunnel cut) that led to a
    disconnection, and the server's own ``detached`` times (connectionId -> times) within
    ``DETECT_S`` before one. The server's linger runs from there; the client notices only at its
    idle timer (a killed router: up to maxIdleInterval + realtimeRequestTimeout later)."""
    conns = [e for e in entries if e["k"] == "conn"]

    def back_from(start: float, end: float) -> tuple[float, float] | None:
        """The stretch from ``start`` to the next CONNECTED after the first disconnection in
        [start, end], if nothing was CONNECTED in between."""
        for e in conns:
            if e["t"] < start:
                continue
            if e["t"] > end or e["state"] == "connected":
                return None
            again = next((c["t"] for c in conns if c["state"] == "connected" and c["t"] >= e["t"]), None)
            return start, float("inf") if again is None else again
        return None

    lost = [(start, end) for start, end in cuts]
    for cid in sorted({e["id"] for e in conns if e.get("id")}):
        lost += [(t, t + DETECT_S) for t in (detached or {}).get(cid, ())]
    spans: list[tuple[float, float]] = [s for start, end in lost if (s := back_from(start, end))]
    switches: list[tuple[float, str]] = []
    down: float | None = None
    conn_id: str | None = None
    for e in entries:
        if e["k"] != "conn":
            continue
        if e["state"] == "connected":
            if down is not None:
                spans.append((down, e["t"]))
                down = None
            if conn_id is not None and e["id"] != conn_id:
                switches.append((e["t"], e["id"]))
            conn_id = e["id"]
        elif down is None:
            down = e["t"]
    if down is not None:
        spans.append((down, float("inf")))
    return spans, switches


def _leave_explained(
    t: float, conn: str, spans: list[tuple[float, float]], switches: list[tuple[float, str]], linger_s: float
) -> bool:
    if any(at <= t and new != conn for at, new in switches):
        return True
    return any(start < t and min(end, t) - start >= linger_s - SLACK_S for start, end in spans)


def check_presence(
    logs: Sequence[Mapping[str, Any]],
    linger_s: float,
    faults: Sequence[Mapping[str, Any]] = (),
    detached: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """The presence violations of one run (see the module docstring), as (kind, detail) dicts.
    ``faults``: the applied faults; ``detached``: connectionId -> when a frontend lost its transport
    (the frontends' logs). A disconnection counts as away from either (``_away_spans``)."""
    found: list[dict[str, Any]] = []
    cuts: dict[str, list[tuple[float, float]]] = {}
    for f in faults:
        if f.get("kind") == "tunnel_cut" and f.get("started") is not None:
            end = f["ended"] if f.get("ended") is not None else float("inf")
            cuts.setdefault(f["target"], []).append((f["started"], end))
    away = {log["client"]: _away_spans(log["entries"], cuts.get(log["client"], ()), detached) for log in logs}
    finals: dict[str, dict[str, set[Member]]] = {}
    for log in logs:
        who, channel = log["client"], log["channel"]
        view: set[Member] = set()
        syncing: set[Member] | None = None
        closing = False  # the last page's members are being read: the sync ends after them
        saw = False
        connected = False
        for e in log["entries"]:
            k = e["k"]
            if closing and not (k == "sync" and e["last"]):
                # Every member of the last page is recorded with ``last``: the page (and the sync)
                # ends at the first entry that is not one of them.
                view, syncing, closing = syncing or set(), None, False
            if k == "conn":
                connected = e["state"] == "connected"
            elif k == "attach" and not e.get("resumed"):
                view = set()  # a new attach without RESUMED: the SYNC that follows (if any) fills it
            elif k == "sync":
                saw = True
                syncing = syncing if syncing is not None else set()
                syncing.add((e["member"][0], e["member"][1]))
                closing = bool(e["last"])
            elif k == "pres":
                saw = True
                for action, client_id, conn_id in e["events"]:
                    member = (client_id, conn_id)
                    where = {"observer": who, "channel": channel, "t": e["t"], "member": list(member)}
                    if action == "leave":
                        spans, switches = away.get(client_id, ([], []))
                        if not _leave_explained(e["t"], conn_id, spans, switches, linger_s):
                            found.append({"kind": "presence_spurious_leave", **where, "serial": e["serial"]})
                        view.discard(member)
                    elif action == "enter":
                        if member in view:
                            found.append({"kind": "presence_spurious_enter", **where, "serial": e["serial"]})
                        view.add(member)
                    elif action in ("update", "present"):
                        view.add(member)
        if closing:
            view = syncing or set()
        if saw and log.get("attached_at_end") and connected:
            finals.setdefault(channel, {})[who] = view
    for channel, views in finals.items():
        distinct = {frozenset(v) for v in views.values()}
        if len(distinct) > 1:
            sizes = {who: len(v) for who, v in views.items()}
            every = set().union(*views.values())
            differ = sorted(list(m) for m in every if not all(m in v for v in views.values()))
            found.append(
                {"kind": "presence_sets_disagree", "channel": channel, "sizes": sizes, "differ": differ[:10]}
            )
    return found

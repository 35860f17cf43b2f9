"""The chaos checker: pure judgement of the publishers' outcomes and the subscribers' receive logs.

Input (plain JSON-able data, what ``bench/chaos/load.py`` records):

* ``publishes``: one dict per publish attempt: ``pid`` (payload id ``"<client>:<n>"``), ``client``,
  ``channel``, ``outcome``, ``serial`` (the ACK's serial), ``code`` (the NACK's or failure's error
  code), ``t`` (wall time the outcome was known). Outcomes:

  - ``"ack"``: ACKed with ``serial``;
  - ``"nack"``: NACKed by the server;
  - ``"failed"``: the client was told it failed for good (connection FAILED or CLOSED);
  - ``"indeterminate"``: the client gave up without an answer (SUSPENDED after connectionStateTtl,
    RTN7e, or still unanswered when the run ended). The server may have appended it before the
    ACK was lost, so it may be delivered or not, but if it is, it is judged like any message.
* ``logs``: one dict per subscribing client: ``client``, ``channel``, ``attached_at_end`` (still
  attached when the run ended) and ``entries`` in the order the client saw them:

  - ``{"k": "conn", "t", "state", "id", "server", "resumed", "code"}``: a connection state change
    (``server`` is the serverId of CONNECTED's transport);
  - ``{"k": "attach", "t", "resumed", "code", "serial", "update"}``: ATTACHED on the channel, with the
    channelSerial the client held right after it;
  - ``{"k": "msg", "t", "serial", "pid", "connected"}``: a message, and whether the connection was
    CONNECTED when it arrived.

Verdicts (DESIGN section 7):

1. every ACKed publish after a subscriber's first attach is delivered to it exactly once and in serial
   order (``lost``, ``duplicated``, ``out_of_order``); a publish missing inside an *announced* gap is an
   announced discontinuity, not a loss;
2. every jump in a subscriber's serials (a skipped seq, or a new epoch) is preceded, since the previous
   message, by an ATTACHED without RESUMED carrying 90003 or by a failed resume (a new connectionId):
   otherwise a ``silent_gap``;
3. no two owners: a channel serial names one payload everywhere (every ACK and every delivery to
   every subscriber), so two homes numbering the same channel at once show up as one serial with
   two payloads; and a message reaches a client only while its connection is CONNECTED
   (``split_brain``);
4. nothing NACKed or failed is delivered (``nacked_delivered``, ``failed_delivered``), and a payload is
   delivered only with the serial its ACK gave it (``serial_mismatch``);
5. a subscriber's channelSerial never moves backwards: an ATTACHED that leaves it below a serial it
   already held (an older epoch, or a lower seq of the same one) is a ``serial_backwards``, announced
   or not (the client would be sent what it has again);
6. one connection's publishes on a channel are numbered, and delivered, in the order it sent them
   (``publisher_order``): a publish's ``seq`` is its place in the client's send order (the order of
   its msgSerials); without one, the number at the end of its pid is used;
7. with ``ttl_s``: a discontinuity (ATTACHED without RESUMED with 90003, or a new connectionId)
   is announced only to a client that was away longer than the TTL, or hit by a fault longer than
   it (``faults``); otherwise a ``discontinuity_within_ttl``;
8. with ``cluster`` (the nodes' home tenures, from their logs; see ``homes.py``): never two homes
   of a channel at once between nodes that can reach each other (``two_homes``), and never a home
   taken from a copy older than a serial already ACKed (``stale_home``).

With ``destroyed`` (the simulation's record of entries whose every copy a double fault
destroyed; frontend/simloss.py), these are counted in ``beyond_model`` instead of as violations:
a duplicate or a serial mismatch involving such an entry (the retry of a publish whose numbering
died with both copies is numbered again), a ``split_brain`` of two ACKed or delivered payloads at
such a serial (the next home continued an older copy and numbered it again), and a ``lost`` ACKed
serial that is such an entry (nothing held it any more). A message delivered while not
CONNECTED is still a ``split_brain``.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.chaos import presence_check, tenures

CONTINUITY_LOST = 90003
VIOLATION_KINDS = (
    "lost",
    "duplicated",
    "out_of_order",
    "silent_gap",
    "split_brain",
    "nacked_delivered",
    "failed_delivered",
    "serial_mismatch",
    "serial_backwards",
    "publisher_order",
    "discontinuity_within_ttl",
    "two_homes",
    "stale_home",
    *presence_check.KINDS,
)
OUTCOMES = ("ack", "nack", "failed", "indeterminate")
MAX_EXAMPLES = 20
# A discontinuity is explained by a fault longer than the TTL that ended at most this long before it
# (the re-attach that announces it follows the reconnection).
EXPLAINS_FOR_S = 30.0
CLIENT_FAULTS = ("tunnel_cut", "slow_consumer")  # faults that touch only their target client

Order = tuple[int, int]


def split_serial(serial: str) -> tuple[str, int]:
    """``"<epoch>:<seq>"`` -> ``(epoch, seq)``."""
    epoch, _, seq = serial.rpartition(":")
    return epoch, int(seq)


@dataclass
class Verdict:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATION_KINDS, 0))
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first violations, with context
    announced: list[dict[str, Any]] = field(default_factory=list)  # announced discontinuities
    announced_lost: int = 0  # ACKed publishes a subscriber missed inside an announced gap
    # duplicates, serial mismatches, two payloads at one serial and losses of entries whose every
    # copy a double fault destroyed (the simulation's ``destroyed``; frontend/simloss.py): reported,
    # not violations
    beyond_model: dict[str, int] = field(default_factory=dict)
    delivered: int = 0  # distinct (subscriber, serial) deliveries
    not_attached_at_end: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def flag(self, kind: str, count: int = 1, **detail: Any) -> None:
        self.counts[kind] += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"kind": kind, **detail})

    def causes(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for a in self.announced:
            for c in a["causes"]:
                out[c] += 1
        return dict(sorted(out.items()))


class EpochOrder:
    """Orders serials across epochs: an epoch ranks by the earliest time anyone saw it."""

    def __init__(self, sightings: Iterable[tuple[float, str]]) -> None:
        first: dict[str, float] = {}
        for t, serial in sightings:
            epoch, _ = split_serial(serial)
            if epoch not in first or t < first[epoch]:
                first[epoch] = t
        self.rank = {e: i for i, e in enumerate(sorted(first, key=lambda e: (first[e], e)))}

    def __call__(self, serial: str) -> Order:
        epoch, seq = split_serial(serial)
        return self.rank.get(epoch, len(self.rank)), seq


def _sightings(
    publishes: Sequence[Mapping[str, Any]], logs: Sequence[Mapping[str, Any]]
) -> list[tuple[float, str]]:
    out = [(p["t"], p["serial"]) for p in publishes if p.get("serial")]
    for log in logs:
        for e in log["entries"]:
            if e["k"] in ("msg", "attach", "pres") and e.get("serial"):
                out.append((e["t"], e["serial"]))
    return out


@dataclass
class _Gap:
    after: Order | None  # the last serial before the jump (None: the channel was empty at attach)
    before: Order  # the first serial after it
    causes: list[str]


def check(
    publishes: Sequence[Mapping[str, Any]],
    logs: Sequence[Mapping[str, Any]],
    *,
    faults: Sequence[Mapping[str, Any]] = (),
    ttl_s: float | None = None,
    cluster: tenures.ClusterRecord | None = None,
    presence_linger_s: float | None = None,
    destroyed: Callable[[str, str], bool] | None = None,
) -> Verdict:
    """Judge one run (see the module docstring). ``faults`` are the applied faults (``kind``,
    ``target``, ``started``, ``ended``), needed with ``ttl_s`` for check 7. ``destroyed(channel,
    serial)`` says a serial's every copy was lost at once (only the simulation knows)."""
    v = Verdict()
    order = EpochOrder(_sightings(publishes, logs))
    acked_by_channel: dict[str, list[tuple[Order, str, str]]] = defaultdict(list)
    ack_serial: dict[str, str] = {}
    outcome: dict[str, Mapping[str, Any]] = {}
    for p in publishes:
        if p["outcome"] not in OUTCOMES:
            raise ValueError(f"unknown publish outcome {p['outcome']!r}")
        outcome[p["pid"]] = p
        if p["outcome"] == "ack" and p.get("serial"):
            acked_by_channel[p["channel"]].append((order(p["serial"]), p["serial"], p["pid"]))
            ack_serial[p["pid"]] = p["serial"]
    for acked in acked_by_channel.values():
        acked.sort()

    _check_owners(v, publishes, logs, destroyed)
    send_order = {p["pid"]: _send_order(p) for p in publishes}
    _check_publisher_order(v, publishes, order, send_order)
    for log in logs:
        acked = acked_by_channel.get(log["channel"], [])
        _check_subscriber(v, log, order, acked, ack_serial, outcome, send_order, destroyed)
    if ttl_s is not None:
        for log in logs:
            _check_discontinuities(v, log, faults, ttl_s)
    if presence_linger_s is not None:
        detached = cluster.detached if cluster is not None else {}
        server_lost: dict[str, list[float]] = defaultdict(list)
        for span in cluster.down if cluster is not None else ():
            server_lost[span["node"]].append(span["from"])
        for cut in cluster.separations if cluster is not None else ():
            for node in cut["side"]:
                server_lost[node].append(cut["from"])
        for found in presence_check.check_presence(logs, presence_linger_s, faults, detached, server_lost):
            kind = found.pop("kind")
            v.flag(kind, **found)
    if cluster is not None:
        for found in tenures.two_homes(cluster):
            v.flag("two_homes", **found)
        acks = []
        for p in publishes:
            if p["outcome"] == "ack" and p.get("serial"):
                epoch, seq = split_serial(p["serial"])
                acks.append((p["channel"], p["t"], epoch, seq))
        for found in tenures.stale_homes(cluster, acks):
            v.flag("stale_home", **found)
    return v


def _send_order(p: Mapping[str, Any]) -> tuple[str, int] | None:
    """(the publisher's stream: client and channel, place in its send order), if known."""
    if p.get("seq") is not None:
        return f"{p['client']}|{p['channel']}", int(p["seq"])
    head, _, tail = str(p["pid"]).rpartition(":")
    if not tail.isdigit() or not head:
        return None
    return f"{head}|{p['channel']}", int(tail)


def _check_publisher_order(
    v: Verdict,
    publishes: Sequence[Mapping[str, Any]],
    order: EpochOrder,
    send_order: Mapping[str, tuple[str, int] | None],
) -> None:
    """6 (ACK side): a publisher's ACKed serials on a channel increase with its send order."""
    streams: dict[str, list[tuple[int, Order, Mapping[str, Any]]]] = defaultdict(list)
    for p in publishes:
        key = send_order.get(p["pid"])
        if key is not None and p["outcome"] == "ack" and p.get("serial"):
            streams[key[0]].append((key[1], order(p["serial"]), p))
    for sent in streams.values():
        sent.sort(key=lambda x: x[0])
        top: tuple[Order, Mapping[str, Any]] | None = None
        for _, o, p in sent:
            if top is not None and o < top[0]:
                v.flag(
                    "publisher_order",
                    client=p["client"],
                    channel=p["channel"],
                    pid=p["pid"],
                    serial=p["serial"],
                    t=p["t"],
                    sent_after=top[1]["pid"],  # ... yet numbered before it
                    which_got=top[1]["serial"],
                )
            if top is None or o > top[0]:
                top = (o, p)


def _check_discontinuities(
    v: Verdict, log: Mapping[str, Any], faults: Sequence[Mapping[str, Any]], ttl_s: float
) -> None:
    """7: an announced discontinuity needs an absence, or a fault, longer than the TTL before it. The
    absence is the longest stretch not CONNECTED since the channel last showed continuity (a message
    or an ATTACHED): brief reconnections in between, with the channel still re-attaching, do not
    shorten it."""
    who = log["client"]
    away_since: float | None = None
    longest = 0.0  # the longest stretch not CONNECTED since the channel's last message or ATTACHED
    conn_id: str | None = None
    for e in log["entries"]:
        what = None
        if e["k"] == "conn":
            if e["state"] == "connected":
                if away_since is not None:
                    longest = max(longest, e["t"] - away_since)
                away_since = None
                if conn_id is not None and e["id"] != conn_id:
                    what = f"new connectionId (code {e.get('code')})"
                conn_id = e["id"]
            elif away_since is None:
                away_since = e["t"]
        elif e["k"] == "attach" and not e.get("resumed") and e.get("code") == CONTINUITY_LOST:
            what = "attached without RESUMED, 90003"
        if what is not None:
            t = e["t"]
            if longest <= ttl_s and not _long_fault(faults, who, t, ttl_s):
                v.flag(
                    "discontinuity_within_ttl",
                    client=who,
                    channel=log["channel"],
                    t=t,
                    what=what,
                    longest_away_s=round(longest, 3),
                )
        if e["k"] in ("msg", "attach"):
            longest = 0.0


def _long_fault(faults: Sequence[Mapping[str, Any]], client: str, t: float, ttl_s: float) -> bool:
    """A fault longer than the TTL that touched ``client`` (its own, or the whole cluster's) began
    before ``t`` and ended at most EXPLAINS_FOR_S before it."""
    for f in faults:
        start, end = f.get("started"), f.get("ended")
        if start is None or start > t or (end is not None and t - end > EXPLAINS_FOR_S):
            continue
        length = (end if end is not None else t) - start
        if length > ttl_s and (f.get("target") == client or f.get("kind") not in CLIENT_FAULTS):
            return True
    return False


def _check_owners(
    v: Verdict,
    publishes: Sequence[Mapping[str, Any]],
    logs: Sequence[Mapping[str, Any]],
    destroyed: Callable[[str, str], bool] | None = None,
) -> None:
    """3: one payload per (channel, serial) across every ACK and every delivery (beyond the model
    at a serial a double fault destroyed)."""
    named: dict[tuple[str, str], tuple[str, str]] = {}  # (channel, serial) -> (pid, first witness)
    witnesses: list[tuple[str, str, str | None, str]] = [
        (p["channel"], p["serial"], p["pid"], f"ack to {p['client']}")
        for p in publishes
        if p["outcome"] == "ack" and p.get("serial")
    ]
    for log in logs:
        for e in log["entries"]:
            if e["k"] == "msg":
                witnesses.append((log["channel"], e["serial"], e.get("pid"), f"delivery to {log['client']}"))
    for channel, serial, pid, witness in witnesses:
        if pid is None:
            continue
        first = named.setdefault((channel, serial), (pid, witness))
        if first[0] != pid and destroyed is not None and destroyed(channel, serial):
            v.beyond_model["split_brain"] = v.beyond_model.get("split_brain", 0) + 1
        elif first[0] != pid:
            v.flag(
                "split_brain",
                channel=channel,
                serial=serial,
                pid=pid,
                witness=witness,
                other_pid=first[0],
                other_witness=first[1],
            )


def _check_subscriber(
    v: Verdict,
    log: Mapping[str, Any],
    order: EpochOrder,
    acked: list[tuple[Order, str, str]],
    ack_serial: Mapping[str, str],
    outcome: Mapping[str, Mapping[str, Any]],
    send_order: Mapping[str, tuple[str, int] | None],
    destroyed: Callable[[str, str], bool] | None = None,
) -> None:
    who, channel = log["client"], log["channel"]

    def beyond_model(kind: str, *serials: str) -> bool:
        if destroyed is None or not any(destroyed(channel, s) for s in serials):
            return False
        v.beyond_model[kind] = v.beyond_model.get(kind, 0) + 1
        return True

    held: Order | None = None  # the highest serial this subscriber has held (message or ATTACHED)
    sent_top: dict[str, tuple[int, str]] = {}  # publisher stream -> (highest send index delivered, pid)
    started = False
    start: Order | None = None
    prev: Order | None = None
    prev_t: float | None = None
    pending: list[str] = []  # announcements since the previous message
    conn_id: str | None = None
    connected = False
    received: set[str] = set()
    received_pids: set[str] = set()
    pid_serials: dict[str, set[str]] = defaultdict(set)
    gaps: list[_Gap] = []
    last: Order | None = None

    for e in log["entries"]:
        k = e["k"]
        if k == "conn":
            if e["state"] == "connected":
                if conn_id is not None and e["id"] != conn_id:
                    pending.append(f"new connectionId (code {e.get('code')})")
                conn_id, connected = e["id"], True
            else:
                connected = False
            continue
        if k == "attach":
            at = order(e["serial"]) if e.get("serial") else None
            if not started:
                started = True
                if at is not None:
                    start = prev = at
            else:
                if not e.get("resumed") and e.get("code") == CONTINUITY_LOST:
                    pending.append("attached without RESUMED, 90003")
                if at is not None and held is not None and at < held:
                    # 5: the server moved the client's serial back (a stale home answered).
                    v.flag(
                        "serial_backwards",
                        client=who,
                        channel=channel,
                        serial=e["serial"],
                        t=e["t"],
                        held=list(held),
                        code=e.get("code"),
                    )
            if at is not None and (held is None or at > held):
                held = at
            continue
        if k not in ("msg", "pres"):  # a PRESENCE frame holds a serial of the same sequence
            continue
        serial, pid, t = e["serial"], e.get("pid"), e["t"]
        where = {"client": who, "channel": channel, "serial": serial, "t": t}
        # 3: only the current owner's transport delivers, and only while CONNECTED.
        if not connected or not e.get("connected", True):
            v.flag("split_brain", **where, connected=False)
        # 4: nothing NACKed or failed, and each payload with its own serial.
        if pid is not None:
            p = outcome.get(pid)
            if p is not None and p["outcome"] == "nack":
                v.flag("nacked_delivered", **where, pid=pid, code=p.get("code"))
            elif p is not None and p["outcome"] == "failed":
                v.flag("failed_delivered", **where, pid=pid, code=p.get("code"))
            elif pid in ack_serial and ack_serial[pid] != serial:
                if not beyond_model("serial_mismatch", serial, ack_serial[pid]):
                    v.flag("serial_mismatch", **where, pid=pid, acked=ack_serial[pid])
            pid_serials[pid].add(serial)
            received_pids.add(pid)
            if len(pid_serials[pid]) == 2 and not beyond_model("duplicated", *pid_serials[pid]):
                v.flag("duplicated", **where, pid=pid, serials=sorted(pid_serials[pid]))
        # 1: exactly once, in order.
        if serial in received:
            v.flag("duplicated", **where)
            continue
        received.add(serial)
        v.delivered += 1
        o = order(serial)
        if held is None or o > held:
            held = o
        key = send_order.get(pid) if pid is not None else None
        if key is not None:
            # 6 (delivery side): one publisher's messages arrive in the order it sent them.
            top = sent_top.get(key[0])
            if top is not None and key[1] < top[0]:
                v.flag("publisher_order", **where, pid=pid, delivered_after=top[1])
            if top is None or key[1] > top[0]:
                sent_top[key[0]] = (key[1], str(pid))
        if prev is not None:
            if o < prev:
                v.flag("out_of_order", **where, previous=list(prev))
            elif o != (prev[0], prev[1] + 1):
                # 2: a jump must be announced.
                if pending:
                    gaps.append(_Gap(prev, o, list(pending)))
                    v.announced.append(
                        {
                            "client": who,
                            "channel": channel,
                            "t": t,
                            "from": list(prev),
                            "to": list(o),
                            "causes": list(pending),
                        }
                    )
                else:
                    gaps.append(_Gap(prev, o, []))
                    v.flag("silent_gap", **where, previous=list(prev), previous_t=prev_t)
        elif pending and started:
            v.announced.append(
                {
                    "client": who,
                    "channel": channel,
                    "t": t,
                    "from": None,
                    "to": list(o),
                    "causes": list(pending),
                }
            )
        pending = []
        if prev is None or o > prev:
            prev, prev_t = o, t
        last = prev

    if not log.get("attached_at_end"):
        v.not_attached_at_end.append(who)
    if not started:
        return
    # 1: every ACKed publish after the first attach (up to the end, or the last message if it left).
    lo = bisect.bisect_right(acked, (start, "\uffff", "")) if start is not None else 0
    expected = acked[lo:]
    if not log.get("attached_at_end"):
        expected = [a for a in expected if last is not None and a[0] <= last]
    tail_announced = bool(pending)
    for o, serial, pid in expected:
        if pid in received_pids:  # the payload itself, not just its serial (another may have taken it)
            continue
        gap = next((g for g in gaps if (g.after is None or g.after < o) and o < g.before), None)
        if gap is not None and gap.causes:
            v.announced_lost += 1
        elif gap is None and (last is None or o > last) and tail_announced:
            v.announced_lost += 1
        elif not beyond_model("lost", serial):
            v.flag("lost", client=who, channel=channel, serial=serial, in_silent_gap=gap is not None)

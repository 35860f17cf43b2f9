"""Zone quorum: when a home may keep its copy in its own zone, and the witness that decides it.

Theory of operation
-------------------
Normally a channel's home ACKs a publish only once a frontend in **another zone** holds it
(``kernel/placement.py``). That needs no vote: on either side of any partition, a home without a
peer in another zone waits, so two sides never both ACK (docs/architecture.md, "Zone quorum").
It also means that a two-zone cluster stops publishing when one zone is lost.

**Degraded placement** lets a home keep its copy on another frontend of its own zone (or ACK with
no copy at all when it is the only frontend). It is allowed only to a zone that holds a
**majority of the cluster's zones**:

- The votes are *zones*: every zone this process has ever seen a member in (frontends and routers
  alike; a reaped member's zone keeps its vote) plus the configured ``zones``. A zone with routers
  and no frontend is a **witness zone**: it holds no data and only votes.
- A frontend zone counts its own vote. Any other vote comes from a **grant** of a witness zone's
  router (``Witness``): a time-bounded lease, asked for by each frontend that needs it and renewed
  while it does. A frontend zone that is alive in the map never needs to vote: were one reachable,
  the copy would go there and no degraded placement would be asked for.
- ``1 + granted witness zones > len(votes) / 2``. With two frontend zones and one witness zone,
  either frontend zone may go on alone with the witness's grant; without a witness zone, neither
  may (1 of 2 is no majority). A single-zone cluster holds 1 of 1: always degraded, and says so.

**The witness** (one ``Witness`` per router of a witness zone) grants at most one frontend zone at
a time, and is sticky: once a node of zone Z holds a grant, no node of another zone gets one until
every holder of Z has **released** it (asked with ``need=False``: it holds nothing that lives only
in its own zone any more) or was forgotten (gossip reaped it: out of sight for ``dead_retention``).
So the zone that ACKed alone must hand its logs to another zone before that zone may ACK alone in
turn: the log a later home acquires holds every ACKed entry. A witness zone's vote is held when a
strict majority of the routers ever seen in it granted (one router per witness zone is the plain
setup). The grant is a lease on the holder's side (``lease_ms`` from when it *sent* the request):
a holder cut off from its witness stops ACKing alone within ``lease_ms``, long before a reap could
let another zone in. A holder that restarts asks under a new boot id; when neither it (it committed
with no copy) nor a live holder of its zone can still hold what the zone ACKed alone, every node is
told once (``lost``), and logs acquired from older copies start new epochs. A restarted witness
has forgotten its holders: for its first lease it grants nothing (a grant given before the restart
has lapsed by then) and re-learns the holders that still hold data of their own zone (they ask
with ``holding=True``), so a holder that renews keeps its place.

Pure: no I/O, no clock (``now_ms`` comes in).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kernel.placement import ClusterView

DEFAULT_LEASE_MS = 5_000


def zones_seen(view: ClusterView) -> set[str]:
    """Every zone the map holds a member in (any role, any state)."""
    return {p.zone for p in view.peers.values() if p.zone}


def frontend_zones(view: ClusterView) -> set[str]:
    return {p.zone for p in view.frontends() if p.zone}


@dataclass(frozen=True, slots=True)
class QuorumState:
    """One frontend's reading of the zone quorum at an instant (``assess``)."""

    zone: str
    votes: frozenset[str]  # every zone that votes
    witnesses: frozenset[str]  # the voting zones with no frontend known
    granted: frozenset[str]  # witness zones whose grant this frontend holds now
    other_zone_serving: bool  # a frontend of another zone is alive and active in the map
    # Zones that vote and have no live member in the map (for the error text and /health).
    missing: frozenset[str] = frozenset()

    @property
    def single_zone(self) -> bool:
        """Only this zone votes: the cluster replicates, at best, inside one zone."""
        return self.votes == {self.zone}

    @property
    def majority(self) -> bool:
        """This zone plus the witnesses that granted it are more than half of the votes."""
        return 2 * (1 + len(self.granted - {self.zone})) > len(self.votes)

    @property
    def may_degrade(self) -> bool:
        """A home here may keep its copy in its own zone (or ACK alone when it is the only frontend)."""
        return self.majority

    @property
    def wants_grant(self) -> bool:
        """No other frontend zone to copy to, and a witness's grant would make a majority."""
        return not self.other_zone_serving and not self.single_zone and bool(self.witnesses)

    def describe(self) -> str:
        """Why degraded placement is refused, for the NACK and the log."""
        held = 1 + len(self.granted - {self.zone})
        missing = ", ".join(sorted(self.missing)) or "none"
        return (
            f"zone {self.zone} holds {held} of {len(self.votes)} zone votes "
            f"(zones out of reach: {missing}; witness zones: {', '.join(sorted(self.witnesses)) or 'none'})"
        )


def assess(
    view: ClusterView,
    zone: str,
    *,
    remembered: Iterable[str] = (),
    remembered_witnesses: Mapping[str, Iterable[str]] | None = None,
    configured: Iterable[str] = (),
    grants: Mapping[str, int] | None = None,
    now_ms: int = 0,
) -> QuorumState:
    """Read the quorum for a frontend in ``zone``: ``remembered`` holds every zone this process has
    seen before (so a reaped zone keeps its vote), ``remembered_witnesses`` the routers seen in each
    zone, and ``grants`` maps a router to when its grant expires here."""
    votes = zones_seen(view) | set(remembered) | set(configured) | {zone}
    candidates = votes - frontend_zones(view) - {zone}
    routers: dict[str, set[str]] = {z: set() for z in candidates}
    for z, names in (remembered_witnesses or {}).items():
        if z in routers:
            routers[z] |= set(names)
    for p in view.peers.values():
        if p.role == "router" and p.zone in routers:
            routers[p.zone].add(p.node_id)
    witnesses = {z for z, names in routers.items() if names}  # a zone of routers only
    held = {r for r, until in (grants or {}).items() if until > now_ms and view.alive(r)}
    granted = {z for z, names in routers.items() if names and 2 * len(names & held) > len(names)}
    live = {p.zone for p in view.peers.values() if p.alive}
    serving = any(p.zone != zone and p.alive and p.active for p in view.frontends())
    return QuorumState(
        zone=zone,
        votes=frozenset(votes),
        witnesses=frozenset(witnesses),
        granted=frozenset(granted),
        other_zone_serving=serving,
        missing=frozenset(votes - live - {zone}),
    )


def witness_routers(view: ClusterView) -> dict[str, set[str]]:
    """The routers of every zone that has no frontend in the map: who a frontend asks for grants."""
    fronts = frontend_zones(view)
    out: dict[str, set[str]] = {}
    for p in view.peers.values():
        if p.role == "router" and p.zone and p.zone not in fronts:
            out.setdefault(p.zone, set()).add(p.node_id)
    return out


@dataclass(slots=True)
class _Holder:
    zone: str
    until_ms: int
    boot: str = ""  # the holder process's boot id: another one asking under its name restarted
    alone: bool = False  # it commits with no copy at all: its restart loses what it committed


@dataclass(slots=True)
class Witness:
    """The grant one witness router gives (see the module docstring)."""

    started_ms: int
    lease_ms: int = DEFAULT_LEASE_MS
    holders: dict[str, _Holder] = field(default_factory=dict)  # node -> its grant
    # The last holder restart (its zone's lone entries are gone): every node is told once.
    lost_zone: str | None = None
    lost_told: set[str] = field(default_factory=set)
    lost_at_ms: int = 0  # when it was decided: a node told later dates the loss from here
    # Per zone, since it last had no holder: each holder's fate (holding, released, restarted).
    fates: dict[str, dict[str, str]] = field(default_factory=dict)

    def ask(
        self, now_ms: int, node: str, zone: str, *, need: bool, holding: bool, boot: str = "",
        alone: bool = False, alive: Callable[[str], bool] = lambda node: False,
    ) -> tuple[bool, str | None, bool]:
        """``node`` of ``zone`` (process ``boot``) asks for a grant (``need``), or releases it;
        ``holding``: it holds entries that live only in its own zone. Answers (granted, the zone
        holding grants, lost): ``lost``, once to each node, after a holder was restarted (an earlier
        process under its name held a grant): what its zone held alone is gone, so no copy is
        known complete and the asker starts new epochs rather than continue one (90003). Only once
        no other holder of the zone that has not restarted is ``alive`` (in the witness's map): a
        degraded home's copy lives on another frontend of its zone, so one restart loses nothing."""
        before = self.holders.get(node)
        if before is not None and before.boot != boot:
            del self.holders[node]
            self._fate(before.zone, node, "lost" if before.alone else "restarted", alive, now_ms)
        lost = self.lost_zone is not None and node not in self.lost_told
        self.lost_told.add(node)
        granted, holder = self._ask(now_ms, node, zone, need, holding, boot)
        if node in self.holders:
            self.holders[node].alone = alone
        return granted, holder, lost

    def _ask(
        self, now_ms: int, node: str, zone: str, need: bool, holding: bool, boot: str
    ) -> tuple[bool, str | None]:
        if not need and not holding:
            if self.holders.pop(node, None) is not None:
                self._fate(zone, node, "released", lambda n: False)
            return False, self.holder_zone()
        others = sorted({h.zone for n, h in self.holders.items() if h.zone != zone})
        if others:
            return False, others[0]
        if now_ms < self.started_ms + self.lease_ms:
            # Just started: the holders from before are re-learning their places; grant nothing yet.
            if holding:
                self.holders[node] = _Holder(zone, now_ms, boot)
                self.fates.setdefault(zone, {})[node] = "holding"
            return False, self.holder_zone()
        self.holders[node] = _Holder(zone, now_ms + self.lease_ms, boot)
        self.fates.setdefault(zone, {})[node] = "holding"
        return need, zone

    def lost_age_ms(self, now_ms: int) -> int:
        """How long ago the last loss was decided (a node is told when it next asks, maybe much
        later, and must date the loss from the decision, not from when it heard)."""
        return max(0, now_ms - self.lost_at_ms)

    def _fate(
        self, zone: str, node: str, fate: str, alive: Callable[[str], bool], now_ms: int = 0
    ) -> None:
        """Record what became of a holder; a zone whose holders all released or restarted is done
        with: lost if any restarted while the others could not keep its copies."""
        fates = self.fates.setdefault(zone, {})
        fates[node] = fate
        if fate == "lost":
            # It committed with no copy at all (the only frontend of its zone left): gone with it.
            self.lost_zone, self.lost_told, self.lost_at_ms = zone, set(), now_ms
        elif any(f == "holding" and alive(n) for n, f in fates.items()):
            return  # a holder of the zone lives on: it holds the copies; decide at its fate
        elif "restarted" in fates.values() and "released" not in fates.values():
            # Every holder that kept copies of the others' entries restarted too. (A holder that
            # released held no entry of its zone's alone: it had handed them to another zone.)
            self.lost_zone, self.lost_told, self.lost_at_ms = zone, set(), now_ms
        if not any(f == "holding" for f in fates.values()):
            del self.fates[zone]

    def forget(
        self, nodes: Iterable[str], alive: Callable[[str], bool] = lambda node: False, now_ms: int = 0
    ) -> None:
        """Gossip reaped these members (or they left): they hold nothing any more, and what they
        held is gone unless another holder of their zone is ``alive`` (it holds the copies: decided
        at its own fate). Chaos seed 1490494864 (t 49-81 s): fe-b1 drained and left while fe-b2,
        alive, still held zone b's place; forgetting fe-b1 with no live holder counted declared zone
        b's data lost, and every channel started a new epoch (72 discontinuity_within_ttl)."""
        for node in nodes:
            gone = self.holders.pop(node, None)
            if gone is not None:
                self._fate(gone.zone, node, "restarted", alive, now_ms)

    def holder_zone(self) -> str | None:
        zones = sorted({h.zone for h in self.holders.values()})
        return zones[0] if zones else None


# -- the grant request on the wire (frontend -> witness router, ``POST /witness``) -----------------
WITNESS_PATH = "/witness"
MAC_HEADER = "x-continuity-mac"
MAX_SKEW_MS = 30_000  # a request older (or newer) than this by the witness's clock is refused


def _mac(secret: str, body: bytes) -> str:
    key = hashlib.sha256(b"continuity-witness\x00" + secret.encode()).digest()
    return hmac.new(key, body, "sha256").hexdigest()


def grant_request(
    secret: str, node: str, zone: str, *, need: bool, holding: bool, boot: str, now_ms: int,
    alone: bool = False,
) -> tuple[bytes, str]:
    """The body of a grant request and its MAC header value (HMAC under the cluster secret)."""
    fields = {"node": node, "zone": zone, "need": need, "holding": holding, "alone": alone, "boot": boot,
              "ts": now_ms}  # fmt: skip
    body = json.dumps(fields).encode()
    return body, _mac(secret, body)


@dataclass(frozen=True, slots=True)
class GrantRequest:
    node: str
    zone: str
    need: bool
    holding: bool
    boot: str
    alone: bool = False


def read_grant_request(secrets: Iterable[str], body: bytes, mac: str, now_ms: int) -> GrantRequest | str:
    """The verified request, or why it is refused (a bad MAC, a stale timestamp, a bad shape)."""
    if not any(hmac.compare_digest(_mac(s, body), mac) for s in secrets):
        return "bad mac"
    try:
        raw = json.loads(body)
        req = GrantRequest(
            str(raw["node"]), str(raw["zone"]), bool(raw["need"]), bool(raw["holding"]), str(raw["boot"]),
            bool(raw.get("alone", False)),
        )
        ts = int(raw["ts"])
    except (ValueError, KeyError, TypeError):
        return "malformed request"
    if abs(now_ms - ts) > MAX_SKEW_MS:
        return "stale request"
    return req

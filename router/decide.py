"""The routing decision: which frontend gets a request (DESIGN section 4). Pure: no I/O, no clock.

Theory of operation. The router keeps no per-connection table; everything it needs is in the
request and the gossip cluster map:

- a request without a connection key (a new WebSocket at ``/``, ``/comet/connect`` without
  ``resume``/``recover``, any other forwarded HTTP) goes to the least-loaded active frontend;
- a request that carries a key (``resume=``, ``recover=``, or ``/comet/<key>/...``) goes where the
  connection's state is: the owner named in the key if it is alive and not draining; else the
  secondary named in the key if it is alive (it holds the copy); else the connection's secondary
  under current placement (where a re-replicated copy would be); else any active frontend, which
  answers the resume in-band (takeover, or 80008);
- a key that does not verify (forged, malformed, signed with an unknown secret) goes to any active
  frontend, which answers it in-band with 80018 and a new connection. A forged key therefore never
  steers a request at the state it names.

Targets that just refused a TCP connection are passed in ``refused`` and treated as dead at once:
the router does not wait for gossip to notice (DESIGN 4.2). ``RefusalMemory`` remembers them for a
short while, so that a burst of resumes after a crash pays the refused connect once.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from kernel.keys import InvalidKey, KeySigner
from kernel.placement import ClusterView, Peer, Placement

COMET_PREFIX = "/comet/"
COMET_CONNECT = "connect"


class RequestKind(enum.StrEnum):
    """What a request is, for dispatch and metrics."""

    WEBSOCKET = "websocket"  # an upgrade: proxied as a byte pipe
    COMET = "comet"  # /comet/...: forwarded on a pooled keep-alive connection
    HTTP = "http"  # any other path the router does not serve itself: forwarded like Comet
    LOCAL = "local"  # /health, /metrics, /cluster: answered by the router


class Reason(enum.StrEnum):
    """Why a target was chosen. Values are metric labels and log fields."""

    NEW = "new"  # no key: least-loaded active frontend
    OWNER = "owner"  # the owner named in the key, alive and active
    KEY_SECONDARY = "key_secondary"  # the secondary named in the key, alive
    PLACEMENT_SECONDARY = "placement_secondary"  # the connection's secondary under current placement
    FALLBACK = "fallback"  # a valid key whose holders are all gone: any active frontend
    INVALID_KEY = "invalid_key"  # forged or malformed key: any active frontend answers 80018


UNAVAILABLE = "unavailable"  # metric label of a NoRoute


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRequest:
    """The parts of a request that routing reads: its path and decoded query."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    upgrade: bool = False  # a WebSocket upgrade

    @classmethod
    def from_target(cls, target: str, *, upgrade: bool = False) -> RouteRequest:
        """Parse an HTTP request target (``/path?query``). Repeated params: the first wins."""
        parts = urlsplit(target)
        params: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(name, value)
        return cls(path=parts.path or "/", params=params, upgrade=upgrade)

    @property
    def kind(self) -> RequestKind:
        if self.upgrade:
            return RequestKind.WEBSOCKET
        if self.path.startswith(COMET_PREFIX):
            return RequestKind.COMET
        return RequestKind.HTTP

    def carried_key(self) -> str | None:
        """The connection key this request carries, or None for a new connection.

        Precedence: the key in a ``/comet/<key>/<op>`` path, then ``resume`` (RTN15b1), then
        ``recover`` (RTN16k). ``recover`` is normally a bare connectionKey; a whole ably-js
        recovery key (the JSON of ``createRecoveryKey()``, RTN16g) is accepted too and its
        ``connectionKey`` read. An empty value counts as absent.
        """
        if self.path.startswith(COMET_PREFIX):
            segments = self.path[len(COMET_PREFIX):].split("/")
            if len(segments) >= 2 and segments[0] and segments[0] != COMET_CONNECT:
                return unquote(segments[0])
        resume = self.params.get("resume")
        if resume:
            return resume
        recover = self.params.get("recover")
        if recover:
            return _recovery_connection_key(recover)
        return None


def _recovery_connection_key(value: str) -> str:
    """``connectionKey`` of a JSON recovery key; the value itself otherwise (bad JSON stays bad)."""
    if not value.startswith("{") or len(value) > 64 * 1024:
        return value
    try:
        raw = json.loads(value)
    except ValueError:
        return value
    key = raw.get("connectionKey") if isinstance(raw, dict) else None
    return key if isinstance(key, str) else value


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Send the request to ``target`` at ``address`` (``host:port``)."""

    target: str  # node id
    address: str  # the frontend's client address, host:port
    reason: Reason
    connection_id: str | None = None  # from a verified key, for logs


@dataclass(frozen=True, slots=True, kw_only=True)
class NoRoute:
    """No frontend can take the request: answer 503 (HTTP) or DISCONNECTED 80003 in-band (WebSocket)."""

    wanted: Reason  # what the decision was looking for
    message: str


Decision = Route | NoRoute


def _candidate(peer: Peer | None) -> bool:
    """A frontend the router can send to at all: alive with a client address."""
    return peer is not None and peer.role == "frontend" and peer.alive and bool(peer.client_addr)


def without(view: ClusterView, refused: Iterable[str]) -> ClusterView:
    """``view`` with every ``refused`` node marked dead (DESIGN 4.2: refused = dead, at once)."""
    peers = dict(view.peers)
    changed = False
    for node in refused:
        peer = peers.get(node)
        if peer is not None and peer.alive:
            peers[node] = dataclasses.replace(peer, alive=False)
            changed = True
    return ClusterView(peers) if changed else view


def _any_active(view: ClusterView, reason: Reason, connection_id: str | None) -> Decision:
    unaddressed = [p.node_id for p in view.active_frontends() if not p.client_addr]
    node = Placement(view).least_loaded(exclude=unaddressed)
    if node is None:
        return NoRoute(wanted=reason, message="no active frontend in the cluster map")
    return _route(view, node, reason, connection_id)


def _route(view: ClusterView, node: str, reason: Reason, connection_id: str | None) -> Route:
    return Route(target=node, address=view.peers[node].client_addr, reason=reason,
                 connection_id=connection_id)


def decide(
    request: RouteRequest,
    view: ClusterView,
    signer: KeySigner,
    refused: Iterable[str] = frozenset(),
) -> Decision:
    """Return where ``request`` goes in ``view``, skipping the nodes in ``refused``.

    Never raises: a bad key is a routing outcome (``Reason.INVALID_KEY``), and an empty map is a
    ``NoRoute``.
    """
    view = without(view, refused)
    text = request.carried_key()
    if text is None:
        return _any_active(view, Reason.NEW, None)
    try:
        key = signer.verify(text)
    except InvalidKey:
        return _any_active(view, Reason.INVALID_KEY, None)
    owner = view.peers.get(key.owner)
    if _candidate(owner) and view.serving(key.owner):
        return _route(view, key.owner, Reason.OWNER, key.connection_id)
    if key.secondary is not None and _candidate(view.peers.get(key.secondary)):
        return _route(view, key.secondary, Reason.KEY_SECONDARY, key.connection_id)
    placed = Placement(view).connection_secondary(key.connection_id, key.owner)
    if placed is not None and _candidate(view.peers.get(placed)):
        return _route(view, placed, Reason.PLACEMENT_SECONDARY, key.connection_id)
    return _any_active(view, Reason.FALLBACK, key.connection_id)


class RecentAssignments:
    """New connections this router sent to each frontend since that frontend last reported its load.

    Gossip carries load about once a second; without this, every connection opened in that second
    would go to the same "least loaded" frontend. ``adjusted(view)`` adds the count to each load.
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._seen_load: dict[str, float] = {}

    def note(self, node: str) -> None:
        self._count[node] = self._count.get(node, 0) + 1

    def adjusted(self, view: ClusterView) -> ClusterView:
        peers = dict(view.peers)
        for node, peer in view.peers.items():
            if self._seen_load.get(node) != peer.load:
                # A fresh report includes what we sent before it: start counting again.
                self._seen_load[node] = peer.load
                self._count.pop(node, None)
            extra = self._count.get(node, 0)
            if extra:
                peers[node] = dataclasses.replace(peer, load=peer.load + extra)
        return ClusterView(peers)


class RefusalMemory:
    """Nodes that refused a TCP connect recently, each remembered until a deadline.

    ``note(node, now)`` records a refusal; ``current(now)`` returns the nodes still to skip.
    ``now`` is any monotonic clock in seconds; the memory never reads one itself.
    """

    def __init__(self, ttl_s: float) -> None:
        if ttl_s < 0:
            raise ValueError("RefusalMemory ttl_s must be >= 0")
        self._ttl = ttl_s
        self._until: dict[str, float] = {}

    def note(self, node: str, now: float) -> None:
        self._until[node] = now + self._ttl

    def forget(self, node: str) -> None:
        self._until.pop(node, None)

    def current(self, now: float) -> frozenset[str]:
        expired = [n for n, t in self._until.items() if t <= now]
        for node in expired:
            del self._until[node]
        return frozenset(self._until)

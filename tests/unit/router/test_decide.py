"""The routing decision (DESIGN 4), one table row per rule."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import quote

import pytest

from kernel.keys import ConnectionKey, KeySigner
from kernel.placement import ClusterView, Peer, Placement
from router.decide import (
    NoRoute,
    Reason,
    RefusalMemory,
    RequestKind,
    Route,
    RouteRequest,
    decide,
    without,
)

SECRET = "unit-router-secret-0123456789"
OLD_SECRET = "unit-router-old-secret-0123456789"
SIGNER = KeySigner([SECRET])
CONN_ID = "AbCdEfGhIjKlMnOp"


def _fe(node: str, zone: str, load: float, **kw: object) -> Peer:
    return Peer(node_id=node, role="frontend", zone=zone, client_addr=f"{node}.host:80", load=load, **kw)  # type: ignore[arg-type]


BASE = ClusterView(
    {
        "a1": _fe("a1", "a", 0.5),
        "a2": _fe("a2", "a", 0.1),
        "b1": _fe("b1", "b", 0.3),
        "b2": _fe("b2", "b", 0.9),
        "r1": Peer(node_id="r1", role="router", zone="a", client_addr="r1.host:80", load=0.0),
    }
)


def key(owner: str = "a1", secondary: str | None = "b1", signer: KeySigner = SIGNER) -> str:
    return signer.sign(ConnectionKey(owner=owner, secondary=secondary, connection_id=CONN_ID, epoch=3))


def patch(view: ClusterView, node: str, **changes: object) -> ClusterView:
    return view.with_peer(dataclasses.replace(view.peers[node], **changes))  # type: ignore[arg-type]


def drop(view: ClusterView, *nodes: str) -> ClusterView:
    return ClusterView({n: p for n, p in view.peers.items() if n not in nodes})


def ws(query: str = "") -> RouteRequest:
    return RouteRequest.from_target(f"/?{query}", upgrade=True)


def placement_secondary(view: ClusterView, owner: str = "a1") -> str:
    placed = Placement(view).connection_secondary(CONN_ID, owner)
    assert placed is not None
    return placed


DEAD_A1_B1 = patch(patch(BASE, "a1", alive=False), "b1", alive=False)
FORGED = key()[:-4] + ("AAAA" if not key().endswith("AAAA") else "BBBB")

# (id, request, view, refused, expected target, expected reason)
ROUTES = [
    ("new websocket: least loaded", ws("key=k"), BASE, set(), "a2", Reason.NEW),
    ("new comet connect", RouteRequest.from_target("/comet/connect?key=k"), BASE, set(), "a2", Reason.NEW),
    ("unknown path is new", RouteRequest.from_target("/time"), BASE, set(), "a2", Reason.NEW),
    ("empty resume is new", ws("resume="), BASE, set(), "a2", Reason.NEW),
    ("new skips refused least loaded", ws(), BASE, {"a2"}, "b1", Reason.NEW),
    ("new skips draining", ws(), patch(BASE, "a2", active=False), set(), "b1", Reason.NEW),
    ("new skips unaddressed", ws(), patch(BASE, "a2", client_addr=""), set(), "b1", Reason.NEW),
    ("resume: owner", ws(f"resume={quote(key())}"), BASE, set(), "a1", Reason.OWNER),
    ("recover: owner", ws(f"recover={quote(key())}"), BASE, set(), "a1", Reason.OWNER),
    (
        "recover: whole ably-js recovery key",
        ws(
            "recover="
            + quote(json.dumps({"connectionKey": key(), "msgSerial": 4, "channelSerials": {"c": "e:1"}}))
        ),
        BASE,
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "comet path key: owner",
        RouteRequest.from_target(f"/comet/{key()}/recv?key=k"),
        BASE,
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "comet path key beats resume",
        RouteRequest.from_target(f"/comet/{key()}/send?resume={quote(key('b2', 'a2'))}"),
        BASE,
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "resume beats recover",
        ws(f"resume={quote(key())}&recover={quote(key('b2', 'a2'))}"),
        BASE,
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "suspect owner is still alive",
        ws(f"resume={quote(key())}"),
        patch(BASE, "a1", status="suspect"),
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "owner busy is still the owner",
        ws(f"resume={quote(key())}"),
        patch(BASE, "a1", load=99.0),
        set(),
        "a1",
        Reason.OWNER,
    ),
    (
        "owner draining: key secondary",
        ws(f"resume={quote(key())}"),
        patch(BASE, "a1", active=False),
        set(),
        "b1",
        Reason.KEY_SECONDARY,
    ),
    (
        "owner dead: key secondary",
        ws(f"resume={quote(key())}"),
        patch(BASE, "a1", alive=False),
        set(),
        "b1",
        Reason.KEY_SECONDARY,
    ),
    ("owner refused: key secondary", ws(f"resume={quote(key())}"), BASE, {"a1"}, "b1", Reason.KEY_SECONDARY),
    (
        "owner unknown: key secondary",
        ws(f"resume={quote(key())}"),
        drop(BASE, "a1"),
        set(),
        "b1",
        Reason.KEY_SECONDARY,
    ),
    (
        "owner without address: key secondary",
        ws(f"resume={quote(key())}"),
        patch(BASE, "a1", client_addr=""),
        set(),
        "b1",
        Reason.KEY_SECONDARY,
    ),
    (
        "draining secondary still holds the copy",
        ws(f"resume={quote(key())}"),
        patch(patch(BASE, "a1", alive=False), "b1", active=False),
        set(),
        "b1",
        Reason.KEY_SECONDARY,
    ),
    (
        "owner and secondary dead: placement secondary",
        ws(f"resume={quote(key())}"),
        DEAD_A1_B1,
        set(),
        placement_secondary(DEAD_A1_B1),
        Reason.PLACEMENT_SECONDARY,
    ),
    (
        "owner and secondary refused: placement secondary",
        ws(f"resume={quote(key())}"),
        BASE,
        {"a1", "b1"},
        placement_secondary(DEAD_A1_B1),
        Reason.PLACEMENT_SECONDARY,
    ),
    (
        "no secondary in key, owner dead: placement secondary",
        ws(f"resume={quote(key(secondary=None))}"),
        patch(BASE, "a1", alive=False),
        set(),
        placement_secondary(patch(BASE, "a1", alive=False)),
        Reason.PLACEMENT_SECONDARY,
    ),
    (
        "no other zone left: any active",
        ws(f"resume={quote(key())}"),
        patch(DEAD_A1_B1, "b2", alive=False),
        set(),
        "a2",
        Reason.FALLBACK,
    ),
    (
        "placement secondary refused: any active",
        ws(f"resume={quote(key())}"),
        DEAD_A1_B1,
        {"b2"},
        "a2",
        Reason.FALLBACK,
    ),
    (
        "owner is a router: not a target",
        ws(f"resume={quote(key(owner='r1', secondary=None))}"),
        BASE,
        set(),
        placement_secondary(BASE, "r1"),
        Reason.PLACEMENT_SECONDARY,
    ),
    ("forged key: any active", ws(f"resume={quote(FORGED)}"), BASE, set(), "a2", Reason.INVALID_KEY),
    (
        "forged key in comet path",
        RouteRequest.from_target(f"/comet/{FORGED}/recv"),
        BASE,
        set(),
        "a2",
        Reason.INVALID_KEY,
    ),
    ("malformed key", ws("resume=not-a-key"), BASE, set(), "a2", Reason.INVALID_KEY),
    ("overlong key", ws("resume=" + "a." * 200), BASE, set(), "a2", Reason.INVALID_KEY),
    (
        "bad JSON recovery key",
        ws("recover=" + quote('{"connectionKey": 5')),
        BASE,
        set(),
        "a2",
        Reason.INVALID_KEY,
    ),
    (
        "key of another cluster",
        ws(f"resume={quote(key(signer=KeySigner([OLD_SECRET])))}"),
        BASE,
        set(),
        "a2",
        Reason.INVALID_KEY,
    ),
    (
        "forged key never reaches the named owner",
        ws(f"resume={quote(key(owner='b2')[:-2] + 'xx')}"),
        BASE,
        set(),
        "a2",
        Reason.INVALID_KEY,
    ),
]


@pytest.mark.parametrize(
    ("request_", "view", "refused", "target", "reason"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES]
)
def test_route(
    request_: RouteRequest, view: ClusterView, refused: set[str], target: str, reason: Reason
) -> None:
    decision = decide(request_, view, SIGNER, refused)
    assert isinstance(decision, Route), decision
    assert (decision.target, decision.reason) == (target, reason)
    assert decision.address == view.peers[target].client_addr


def test_verified_key_reports_connection_id() -> None:
    decision = decide(ws(f"resume={quote(key())}"), BASE, SIGNER)
    assert isinstance(decision, Route) and decision.connection_id == CONN_ID
    forged = decide(ws(f"resume={quote(FORGED)}"), BASE, SIGNER)
    assert isinstance(forged, Route) and forged.connection_id is None


def test_rotation_accepts_old_secret() -> None:
    rotated = KeySigner([SECRET, OLD_SECRET])
    old = key(signer=KeySigner([OLD_SECRET]))
    decision = decide(ws(f"resume={quote(old)}"), BASE, rotated)
    assert isinstance(decision, Route) and decision.reason is Reason.OWNER


NO_ROUTES = [
    ("empty map, new", ws(), ClusterView(), set(), Reason.NEW),
    ("empty map, resume", ws(f"resume={quote(key())}"), ClusterView(), set(), Reason.FALLBACK),
    ("every frontend refused", ws(f"resume={quote(key())}"), BASE, {"a1", "a2", "b1", "b2"}, Reason.FALLBACK),
    (
        "all draining, new",
        ws(),
        ClusterView({n: dataclasses.replace(p, active=False) for n, p in BASE.peers.items()}),
        set(),
        Reason.NEW,
    ),
    ("only routers", ws(), drop(BASE, "a1", "a2", "b1", "b2"), set(), Reason.NEW),
    ("forged, nothing active", ws("resume=x"), ClusterView(), set(), Reason.INVALID_KEY),
]


@pytest.mark.parametrize(
    ("request_", "view", "refused", "wanted"), [r[1:] for r in NO_ROUTES], ids=[r[0] for r in NO_ROUTES]
)
def test_no_route(request_: RouteRequest, view: ClusterView, refused: set[str], wanted: Reason) -> None:
    decision = decide(request_, view, SIGNER, refused)
    assert isinstance(decision, NoRoute), decision
    assert decision.wanted is wanted


def test_draining_owner_still_served_when_alone() -> None:
    """A draining owner is not sent resumes while any other frontend is active (DESIGN 5, drain)."""
    view = ClusterView({"a1": _fe("a1", "a", 0.0, active=False), "a2": _fe("a2", "a", 0.0)})
    decision = decide(ws(f"resume={quote(key(secondary=None))}"), view, SIGNER)
    assert isinstance(decision, Route) and decision.target == "a2"


@pytest.mark.parametrize(
    ("target", "upgrade", "kind", "carried"),
    [
        ("/", True, RequestKind.WEBSOCKET, None),
        ("/?resume=K", True, RequestKind.WEBSOCKET, "K"),
        ("/?recover=K", True, RequestKind.WEBSOCKET, "K"),
        ("/?resume=R&recover=K", True, RequestKind.WEBSOCKET, "R"),
        ("/?resume=R&resume=S", True, RequestKind.WEBSOCKET, "R"),
        ("/comet/connect?key=x", False, RequestKind.COMET, None),
        ("/comet/connect?resume=K", False, RequestKind.COMET, "K"),
        ("/comet/K/recv", False, RequestKind.COMET, "K"),
        ("/comet/K%2E1/send", False, RequestKind.COMET, "K.1"),
        ("/comet/K", False, RequestKind.COMET, None),
        ("/comet//recv", False, RequestKind.COMET, None),
        ("/time", False, RequestKind.HTTP, None),
        ("", False, RequestKind.HTTP, None),
    ],
)
def test_request_parsing(target: str, upgrade: bool, kind: RequestKind, carried: str | None) -> None:
    request = RouteRequest.from_target(target, upgrade=upgrade)
    assert request.kind is kind
    assert request.carried_key() == carried


def test_without_marks_refused_dead_and_keeps_view_when_nothing_changes() -> None:
    assert without(BASE, []) is BASE
    assert without(BASE, ["nobody"]) is BASE
    marked = without(BASE, ["a1"])
    assert not marked.alive("a1") and marked.alive("a2")
    assert BASE.alive("a1")  # the input view is immutable


def test_refusal_memory_expires() -> None:
    memory = RefusalMemory(2.0)
    memory.note("a1", 10.0)
    memory.note("b1", 11.0)
    assert memory.current(11.5) == {"a1", "b1"}
    assert memory.current(12.0) == {"b1"}
    memory.forget("b1")
    assert memory.current(12.1) == frozenset()
    memory.note("a1", 20.0)
    memory.note("a1", 21.0)  # a second refusal extends the deadline
    assert memory.current(22.5) == {"a1"}
    with pytest.raises(ValueError):
        RefusalMemory(-1)


def test_recent_assignments_spread_new_connections_between_load_reports():
    from kernel.placement import ClusterView, Peer
    from router.decide import RecentAssignments

    view = ClusterView(
        {
            n: Peer(node_id=n, role="frontend", zone="a", client_addr=f"127.0.0.1:{p}")
            for n, p in (("x", 1), ("y", 2), ("z", 3))
        }
    )
    recent = RecentAssignments()
    chosen = []
    for _ in range(6):
        adjusted = recent.adjusted(view)
        node = min(adjusted.active_frontends(), key=lambda p: (p.load, p.node_id)).node_id
        recent.note(node)
        chosen.append(node)
    assert sorted(chosen) == ["x", "x", "y", "y", "z", "z"]
    # A fresh report from x resets what we counted for it.
    reported = view.with_peer(Peer(node_id="x", role="frontend", zone="a", client_addr="127.0.0.1:1", load=5))
    assert recent.adjusted(reported).peers["x"].load == 5
    assert recent.adjusted(reported).peers["y"].load == 2

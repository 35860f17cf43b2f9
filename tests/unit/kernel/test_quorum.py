"""The zone quorum (kernel/quorum.py): votes, majorities, the witness's grants and the signed request."""

from __future__ import annotations

from kernel.placement import ClusterView, Peer
from kernel.quorum import Witness, assess, grant_request, read_grant_request

SECRET = "a-cluster-secret-for-the-quorum-tests"


def cluster(dead: tuple[str, ...] = (), witness: bool = True, zones: str = "ab") -> ClusterView:
    peers = {}
    for z in zones:
        for i in (1, 2):
            n = f"fe-{z}{i}"
            peers[n] = Peer(node_id=n, role="frontend", zone=z, alive=n not in dead)
    peers["rt-a"] = Peer(node_id="rt-a", role="router", zone="a", alive="rt-a" not in dead)
    if witness:
        peers["rt-w"] = Peer(node_id="rt-w", role="router", zone="w", alive="rt-w" not in dead)
    return ClusterView(peers)


def test_two_zones_with_both_alive_need_no_grant():
    q = assess(cluster(), "a")
    assert q.votes == {"a", "b", "w"} and q.witnesses == {"w"}
    assert q.other_zone_serving and not q.wants_grant and not q.majority


def test_a_lost_zone_leaves_a_majority_only_with_the_witness_grant():
    view = cluster(dead=("fe-b1", "fe-b2"))
    q = assess(view, "a", now_ms=1_000)
    assert not q.other_zone_serving and q.wants_grant and not q.may_degrade
    assert q.missing == {"b"} and "1 of 3" in q.describe()
    granted = assess(view, "a", grants={"rt-w": 5_000}, now_ms=1_000)
    assert granted.may_degrade and "2 of 3" in granted.describe()
    lapsed = assess(view, "a", grants={"rt-w": 5_000}, now_ms=5_000)
    assert not lapsed.may_degrade


def test_a_grant_from_a_witness_out_of_sight_does_not_count():
    view = cluster(dead=("fe-b1", "fe-b2", "rt-w"))
    assert not assess(view, "a", grants={"rt-w": 9_000}, now_ms=1).may_degrade


def test_two_zones_without_a_witness_never_degrade():
    q = assess(cluster(dead=("fe-b1", "fe-b2"), witness=False), "a", grants={"rt-x": 9_000})
    assert q.votes == {"a", "b"} and not q.wants_grant and not q.may_degrade


def test_a_forgotten_zone_keeps_its_vote():
    alone = ClusterView({"fe-a1": Peer(node_id="fe-a1", role="frontend", zone="a")})
    assert assess(alone, "a").single_zone and assess(alone, "a").may_degrade
    remembered = assess(alone, "a", remembered={"b", "w"}, remembered_witnesses={"w": {"rt-w"}})
    assert not remembered.single_zone and not remembered.may_degrade
    configured = assess(alone, "a", configured=("a", "b", "w"))
    assert not configured.may_degrade


def test_a_witness_zone_with_two_routers_needs_both():
    view = cluster(dead=("fe-b1", "fe-b2")).with_peer(Peer(node_id="rt-w2", role="router", zone="w"))
    assert not assess(view, "a", grants={"rt-w": 9_000}, now_ms=1).may_degrade
    assert assess(view, "a", grants={"rt-w": 9_000, "rt-w2": 9_000}, now_ms=1).may_degrade


def test_the_witness_grants_one_zone_until_every_holder_releases():
    w = Witness(started_ms=-100_000)
    assert w.ask(0, "fe-a1", "a", need=True, holding=False, boot="1") == (True, "a", False)
    assert w.ask(10, "fe-a2", "a", need=True, holding=False, boot="1") == (True, "a", False)
    # Zone b is refused while any holder of zone a has not released, however long ago it renewed.
    assert w.ask(99_000, "fe-b1", "b", need=True, holding=False, boot="1") == (False, "a", False)
    w.ask(99_000, "fe-a1", "a", need=False, holding=False, boot="1")
    assert w.ask(99_000, "fe-b1", "b", need=True, holding=False, boot="1")[0] is False
    # A holder that no longer needs a grant but still holds entries of its own zone keeps its place.
    w.ask(99_000, "fe-a2", "a", need=False, holding=True, boot="1")
    assert w.ask(99_000, "fe-b1", "b", need=True, holding=False, boot="1")[0] is False
    w.ask(99_000, "fe-a2", "a", need=False, holding=False, boot="1")
    assert w.ask(99_000, "fe-b1", "b", need=True, holding=False, boot="1")[:2] == (True, "b")


def test_a_restarted_holder_is_reported_lost_to_everyone_once():
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-a1", "a", need=True, holding=False, boot="old")
    assert w.ask(1, "fe-a1", "a", need=False, holding=False, boot="new") == (False, None, True)
    assert w.ask(2, "fe-b1", "b", need=True, holding=False, boot="1") == (True, "b", True)
    assert w.ask(3, "fe-b1", "b", need=True, holding=False, boot="1") == (True, "b", False)


def test_the_loss_is_dated_from_its_decision_for_a_node_told_later():
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-b1", "b", need=True, holding=False, boot="old")
    w.ask(1_000, "fe-b1", "b", need=False, holding=False, boot="new")  # restarted: decided at 1 s
    assert w.ask(14_000, "fe-a1", "a", need=True, holding=False, boot="1")[2] is True  # told at 14 s
    assert w.lost_age_ms(14_000) == 13_000


def test_a_restarted_witness_grants_nothing_until_holders_came_back():
    w = Witness(started_ms=0, lease_ms=1_000)
    assert w.ask(100, "fe-a1", "a", need=True, holding=True, boot="1") == (False, "a", False)
    assert w.ask(200, "fe-b1", "b", need=True, holding=False, boot="1") == (False, "a", False)
    assert w.ask(2_000, "fe-a1", "a", need=True, holding=True, boot="1")[0] is True


def test_forgotten_holders_free_the_grant():
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-a1", "a", need=True, holding=False, boot="1")
    w.forget(["fe-a1"])
    assert w.ask(1, "fe-b1", "b", need=True, holding=False, boot="1")[0] is True


def test_a_forgotten_holder_loses_nothing_while_another_holder_of_its_zone_lives():
    # Chaos seed 1490494864: fe-b1 drained and left while fe-b2, alive, still held zone b's place.
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-b1", "b", need=True, holding=True, boot="1")
    w.ask(1, "fe-b2", "b", need=True, holding=True, boot="2")
    w.forget(["fe-b1"], alive=lambda node: node == "fe-b2")
    assert w.ask(2, "fe-b2", "b", need=False, holding=False, boot="2") == (False, None, False)  # released
    assert w.ask(3, "fe-a1", "a", need=True, holding=False, boot="3") == (True, "a", False)  # nothing lost
    # Forgotten with no live holder of its zone (the old behaviour above): its zone's data is lost.
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-b1", "b", need=True, holding=True, boot="1")
    w.ask(1, "fe-b2", "b", need=True, holding=True, boot="2")
    w.forget(["fe-b1"])
    assert w.ask(2, "fe-b2", "b", need=False, holding=False, boot="2")[2] is True


def test_grant_requests_are_signed_and_fresh():
    body, mac = grant_request(SECRET, "fe-a1", "a", need=True, holding=False, boot="x", now_ms=1_000_000)
    req = read_grant_request([SECRET], body, mac, 1_000_500)
    assert not isinstance(req, str) and (req.node, req.zone, req.need, req.boot) == ("fe-a1", "a", True, "x")
    assert read_grant_request(["another-secret"], body, mac, 1_000_500) == "bad mac"
    assert read_grant_request([SECRET], body, mac, 2_000_000) == "stale request"
    assert read_grant_request([SECRET], body + b" ", mac, 1_000_500) == "bad mac"


def test_one_restart_loses_nothing_while_a_zone_peer_holding_the_copies_lives():
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-a1", "a", need=True, holding=True, boot="1")
    w.ask(0, "fe-a2", "a", need=True, holding=True, boot="1")
    alive = {"fe-a2"}.__contains__
    assert w.ask(1, "fe-a1", "a", need=True, holding=False, boot="2", alive=alive)[2] is False
    # Then the peer that kept the copies restarts as well: what zone a held alone is gone.
    assert w.ask(2, "fe-a2", "a", need=True, holding=False, boot="2", alive=alive)[2] is True


def test_a_restart_after_the_peer_released_loses_nothing_but_one_alone_does():
    w = Witness(started_ms=-100_000)
    w.ask(0, "fe-a1", "a", need=True, holding=True, boot="1")
    w.ask(0, "fe-a2", "a", need=True, holding=True, boot="1")
    w.ask(1, "fe-a2", "a", need=False, holding=False, boot="1")  # handed its entries to another zone
    assert w.ask(2, "fe-a1", "a", need=False, holding=False, boot="2")[2] is False
    w.ask(3, "fe-b1", "b", need=True, holding=True, boot="1", alone=True)
    assert w.ask(4, "fe-b1", "b", need=True, holding=False, boot="2", alive=lambda n: True)[2] is True

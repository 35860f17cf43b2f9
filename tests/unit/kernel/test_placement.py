"""Placement: rendezvous order, homes, replicas and secondaries across zones."""

from collections import Counter

from kernel.placement import ClusterView, Peer, Placement, rendezvous_order, weight

NODES = {"fe-a1": "a", "fe-a2": "a", "fe-b1": "b", "fe-b2": "b"}


def view(**overrides) -> ClusterView:
    peers = {n: Peer(node_id=n, role="frontend", zone=z) for n, z in NODES.items()}
    peers["rt1"] = Peer(node_id="rt1", role="router", zone="a")
    for n, fields in overrides.items():
        peers[n.replace("_", "-")] = Peer(
            node_id=n.replace("_", "-"), role="frontend", zone=NODES[n.replace("_", "-")], **fields
        )
    return ClusterView(peers)


def test_weight_is_stable_and_order_is_a_permutation():
    assert weight("fe-a1", "chan") == weight("fe-a1", "chan")
    order = rendezvous_order("chan", NODES)
    assert sorted(order) == sorted(NODES)
    assert order == rendezvous_order("chan", reversed(list(NODES)))


def test_homes_spread_over_frontends_and_routers_are_never_chosen():
    p = Placement(view())
    homes = Counter(p.channel_home(f"ch{i}") for i in range(2000))
    assert set(homes) == set(NODES)
    assert min(homes.values()) > 350


def test_replica_is_in_another_zone():
    p = Placement(view())
    for i in range(200):
        home, replica = p.channel_home(f"c{i}"), p.channel_replica(f"c{i}")
        assert NODES[home] != NODES[replica]


def test_removing_a_node_moves_only_its_channels():
    before = Placement(view())
    after = Placement(view(fe_a1={"alive": False}))
    for i in range(500):
        h = before.channel_home(f"c{i}")
        if h != "fe-a1":
            assert after.channel_home(f"c{i}") == h
        else:
            assert after.channel_home(f"c{i}") == before.channel_order(f"c{i}")[1]


def test_draining_nodes_take_no_new_homes_or_connections():
    p = Placement(view(fe_b2={"active": False}))
    assert all(p.channel_home(f"c{i}") != "fe-b2" for i in range(300))
    assert p.least_loaded() is not None and p.least_loaded() != "fe-b2"


def test_connection_secondary_is_in_another_zone_than_owner():
    p = Placement(view())
    for i in range(100):
        for owner in NODES:
            sec = p.connection_secondary(f"conn{i}", owner)
            assert sec is not None and NODES[sec] != NODES[owner]


def test_single_zone_has_no_replica():
    peers = {n: Peer(node_id=n, role="frontend", zone="a") for n in ("x", "y")}
    p = Placement(ClusterView(peers))
    assert p.channel_replica("c") is None
    assert p.connection_secondary("k", "x") is None


def test_least_loaded():
    loads = (("x", 3), ("y", 1), ("z", 1))
    peers = {n: Peer(node_id=n, role="frontend", zone="a", load=ld) for n, ld in loads}
    p = Placement(ClusterView(peers))
    assert p.least_loaded() == "y"
    assert p.least_loaded(exclude=["y"]) == "z"
    assert Placement(ClusterView({})).least_loaded() is None


def test_replica_for_a_holder_is_never_the_holder_even_when_the_map_names_another_home():
    p = Placement(view())
    for i in range(300):
        name = f"c{i}"
        home = p.channel_home(name)
        assert p.replica_for(name, home) == p.channel_replica(name)
        for holder in NODES:
            replica = p.replica_for(name, holder)
            assert replica != holder and NODES[replica] != NODES[holder]


def test_a_zone_out_of_sight_still_counts_unless_it_left():
    """A zone partition makes the other zone dead in the map: no replica there, yet the map still
    knows it, so a home must not acknowledge alone. Members that left gracefully do not count."""
    cut = view(fe_b1={"alive": False, "status": "dead"}, fe_b2={"alive": False, "status": "suspect"})
    p = Placement(cut)
    assert p.replica_for("chan", "fe-a1") is None
    assert p.other_zone_known("fe-a1")
    gone = view(fe_b1={"alive": False, "status": "left"}, fe_b2={"alive": False, "status": "left"})
    assert not Placement(gone).other_zone_known("fe-a1")
    assert Placement(view()).other_zone_known("fe-b2")


def test_a_home_is_behind_a_serial_of_its_epoch_past_its_committed():
    from frontend.channel_log import ChannelLog
    from frontend.homes import Home

    home = Home(log=ChannelLog("c", "ep", max_messages=10, retention_ms=1000), committed=5)
    assert home.behind("ep:6")
    assert not home.behind("ep:5") and not home.behind("other:9") and not home.behind(None)
    assert not home.behind("garbage")

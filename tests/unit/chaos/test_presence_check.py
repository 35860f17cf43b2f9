"""The chaos checker's presence verdicts (bench/chaos/presence_check.py)."""

from bench.chaos.presence_check import check_presence

LINGER = 5.0


def conn(t, state, cid):
    return {"k": "conn", "t": t, "state": state, "id": cid}


def pres(t, serial, *events):
    return {"k": "pres", "t": t, "serial": serial, "events": [list(e) for e in events]}


def log(client, *entries, attached=True):
    return {"client": client, "channel": "ch", "attached_at_end": attached, "entries": list(entries)}


def kinds(found):
    return [f["kind"] for f in found]


def test_a_leave_within_the_linger_is_spurious_and_one_after_a_long_outage_is_not():
    alice = log("alice", conn(0, "connected", "A"), conn(10, "disconnected", "A"), conn(12, "connected", "A"))
    bob = log(
        "bob",
        conn(0, "connected", "B"),
        pres(1, "e:1", ("enter", "alice", "A")),
        pres(13, "e:2", ("leave", "alice", "A")),
    )
    assert kinds(check_presence([alice, bob], LINGER)) == ["presence_spurious_leave"]
    alice_long = log(
        "alice", conn(0, "connected", "A"), conn(10, "disconnected", "A"), conn(30, "connected", "A")
    )
    bob2 = log(
        "bob",
        conn(0, "connected", "B"),
        pres(1, "e:1", ("enter", "alice", "A")),
        pres(15.5, "e:2", ("leave", "alice", "A")),
        pres(30.5, "e:3", ("enter", "alice", "A")),  # the server re-enters her on her late resume
    )
    assert check_presence([alice_long, bob2], LINGER) == []


def test_a_leave_after_a_new_connection_id_is_explained_and_a_double_enter_is_not():
    alice = log(
        "alice", conn(0, "connected", "A"), conn(10, "disconnected", "A"), conn(12, "connected", "A2")
    )
    bob = log(
        "bob",
        conn(0, "connected", "B"),
        pres(1, "e:1", ("enter", "alice", "A")),
        pres(12.5, "e:2", ("enter", "alice", "A2")),
        pres(16, "e:3", ("leave", "alice", "A")),
        pres(17, "e:4", ("enter", "alice", "A2")),
    )
    assert kinds(check_presence([alice, bob], LINGER)) == ["presence_spurious_enter"]


def test_final_sets_are_folded_from_sync_and_events_and_must_agree():
    a = log(
        "a",
        conn(0, "connected", "A"),
        {"k": "attach", "t": 0, "resumed": False},
        {"k": "sync", "t": 0, "member": ["x", "X"], "last": True},
        pres(1, "e:2", ("enter", "y", "Y")),
    )
    b = log(
        "b",
        conn(0, "connected", "B"),
        pres(1, "e:1", ("enter", "x", "X")),
        pres(1, "e:2", ("enter", "y", "Y")),
    )
    assert check_presence([a, b], LINGER) == []
    c = log("c", conn(0, "connected", "C"), pres(1, "e:1", ("enter", "x", "X")))
    [found] = check_presence([a, b, c], LINGER)
    assert found["kind"] == "presence_sets_disagree" and found["differ"] == [["y", "Y"]]
    gone = log("d", conn(0, "connected", "D"), pres(1, "e:1", ("enter", "x", "X")), attached=False)
    assert check_presence([a, b, gone], LINGER) == []  # not attached at the end: not compared


def test_every_member_of_the_last_sync_page_counts_not_only_the_last_one_recorded():
    # The recorder marks each member of a one-page SYNC ``last`` (chaos seed 20240611: an observer
    # whose three-member SYNC was read as holding only the last of them disagreed with the rest).
    def sync(t, member):
        return {"k": "sync", "t": t, "member": list(member), "last": True}

    a = log(
        "a",
        conn(0, "connected", "A"),
        {"k": "attach", "t": 0, "resumed": False},
        sync(0, ("x", "X")),
        sync(0, ("y", "Y")),
        sync(0, ("z", "Z")),
    )
    b = log(
        "b",
        conn(0, "connected", "B"),
        {"k": "attach", "t": 0, "resumed": False},
        sync(0, ("x", "X")),
        sync(0, ("y", "Y")),
        pres(1, "e:3", ("enter", "z", "Z")),
    )
    c = log(
        "c",
        conn(0, "connected", "C"),
        pres(1, "e:1", ("enter", "x", "X")),
        pres(1, "e:2", ("enter", "y", "Y")),
        pres(1, "e:3", ("enter", "z", "Z")),
    )
    assert check_presence([a, b, c], LINGER) == []


def test_a_cut_of_the_members_own_tunnel_counts_as_away_from_its_start():
    # Chaos seed 1904001850 (t 81-91 s): sub3's tunnel was cut at 81.4 s for 8.2 s; the server lost
    # the transport then and left the member at 86.5 s (the 5 s linger), while the client noticed
    # only at 85.1 s: judged from the client's view alone, the leave looked 1.4 s early.
    sub3 = log(
        "sub3", conn(0, "connected", "S"), conn(85.1, "disconnected", "S"), conn(90.8, "connected", "S")
    )
    obs = log("obs", conn(0, "connected", "O"), pres(1, "e:1", ("enter", "sub3", "S")),
              pres(86.8, "e:2", ("leave", "sub3", "S")))  # fmt: skip
    cut = {"kind": "tunnel_cut", "target": "sub3", "started": 81.4, "ended": 89.6}
    assert kinds(check_presence([sub3, obs], LINGER)) == ["presence_spurious_leave"]
    assert check_presence([sub3, obs], LINGER, [cut]) == []
    # A cut that the client rode out (no disconnection during it) explains nothing.
    early = {"kind": "tunnel_cut", "target": "sub3", "started": 70.0, "ended": 70.5}
    assert kinds(check_presence([sub3, obs], LINGER, [early])) == ["presence_spurious_leave"]
    other = {**cut, "target": "obs"}  # nor does another client's cut
    assert kinds(check_presence([sub3, obs], LINGER, [other])) == ["presence_spurious_leave"]


def test_the_servers_loss_of_the_transport_counts_as_away_when_the_client_then_disconnects():
    # Chaos seed 1141510304 (t 90-108 s): rt2 was killed at 90.4 s; fe-a1 logged sub9's transport
    # detached at 90.8 s and left its member at 95.9 s (the 5 s linger), while sub9 still read 15 s
    # of messages queued on the dead path and saw DISCONNECTED only at 106.5 s.
    sub9 = log(
        "sub9", conn(0, "connected", "S"), conn(106.5, "disconnected", "S"), conn(108.5, "connected", "S")
    )
    obs = log("obs", conn(0, "connected", "O"), pres(1, "e:1", ("enter", "sub9", "S")),
              pres(96.6, "e:2", ("leave", "sub9", "S")))  # fmt: skip
    assert kinds(check_presence([sub9, obs], LINGER)) == ["presence_spurious_leave"]
    assert check_presence([sub9, obs], LINGER, detached={"S": [90.8]}) == []
    # A detach the client never followed with a disconnection (it was CONNECTED again first, or
    # never disconnected within the window) explains nothing.
    spurious = ["presence_spurious_leave"]
    back = log("sub9", conn(0, "connected", "S"), conn(91, "connected", "S"), conn(106, "disconnected", "S"))
    assert kinds(check_presence([back, obs], LINGER, detached={"S": [90.8]})) == spurious
    late = log("sub9", conn(0, "connected", "S"), conn(150, "disconnected", "S"))
    assert kinds(check_presence([late, obs], LINGER, detached={"S": [90.8]})) == spurious
    assert kinds(check_presence([sub9, obs], LINGER, detached={"other": [90.8]})) == spurious

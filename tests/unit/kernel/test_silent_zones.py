"""kernel.membership.silent_zones: a whole zone suspected for the hold is out of sight sooner than by
gossip's deaths; one member's stall, or our own loss of the network, never counts."""

from gossip import MemberInfo, MemberState, Metadata
from kernel.membership import silent_zones

S, A, D = MemberState.SUSPECT, MemberState.ALIVE, MemberState.DEAD


def m(name: str, zone: str, state: MemberState = A, since: float = 0.0) -> MemberInfo:
    meta = Metadata(zone=zone)
    return MemberInfo(name=name, address=("h", 1), incarnation=1, state=state, metadata=meta, since=since)


def zones(*members: MemberInfo, now: float = 10.0, hold: float = 3.0) -> set[str]:
    return silent_zones(list(members), me="a1", now=now, hold=hold, recent=30.0)


def test_a_zone_all_suspected_for_the_hold_is_silent():
    me, a2, w = m("a1", "a"), m("a2", "a"), m("w", "w")
    assert zones(me, a2, w, m("b1", "b", S, 5.0), m("b2", "b", S, 7.0)) == {"b"}
    assert zones(me, a2, w, m("b1", "b", S, 5.0), m("b2", "b", S, 7.5)) == set()  # b2 not for 3 s yet
    assert zones(me, a2, w, m("b1", "b", S, 5.0), m("b2", "b", A)) == set()  # b2 answers
    # One of them already declared dead (recently) counts; long dead does not.
    assert zones(me, a2, m("b1", "b", D, 2.0), m("b2", "b", S, 6.0)) == {"b"}
    assert zones(me, a2, m("b1", "b", D, -100.0), m("b2", "b", S, 6.0)) == set()


def test_one_member_or_our_own_cut_never_counts():
    me = m("a1", "a")
    assert zones(me, m("a2", "a"), m("b1", "b", S, 1.0)) == set()  # a zone of one: its stall is a stall
    # Everyone else suspected: it is we who lost the network.
    b = [m("b1", "b", S, 1.0), m("b2", "b", S, 1.0)]
    assert zones(me, m("a2", "a", S, 1.0), m("w", "w", S, 1.0), *b) == set()
    # The witness alone answers: zone b is silent (and zone a's other frontend is not a zone apart).
    assert zones(me, m("a2", "a", S, 1.0), m("w", "w"), *b) == {"b"}

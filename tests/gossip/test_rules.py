"""One test per SWIM/Lifeguard rule of the pure core, in memberlist's spirit."""

from __future__ import annotations

import dataclasses

import pytest

from gossip import formulas
from gossip.config import GossipConfig
from gossip.errors import LocalProtocolError
from gossip.members import EventKind, MemberRecord, RumourQueue, Suspicion, Verdict, precedence
from gossip.wire import (
    MAX_METADATA_BYTES,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    MemberState,
    Metadata,
    Nack,
    Ping,
    ServingState,
    Suspect,
    encode_body,
    encode_message,
    seal,
)

from .helpers import add_alive, address, decode_all, exchange, kinds, make_core, state_of

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def record(state: MemberState, incarnation: int) -> MemberRecord:
    return MemberRecord(
        name="x", address=address(9), incarnation=incarnation, state=state, metadata=Metadata(), since=0.0
    )


def alive(inc: int) -> Alive:
    return Alive(name="x", address=address(9), incarnation=inc, metadata=Metadata())


def suspect(inc: int) -> Suspect:
    return Suspect(name="x", incarnation=inc, by="y")


def dead(inc: int, by: str = "y") -> Dead:
    return Dead(name="x", incarnation=inc, by=by)


IG, P, C, R = Verdict.IGNORE, Verdict.APPLY, Verdict.CONFIRM, Verdict.REFUTE


@pytest.mark.parametrize(
    ("state", "rumour", "expected"),
    [
        # alive against stale, equal and newer incarnations (record at incarnation 5)
        (A, alive(4), IG), (A, alive(5), IG), (A, alive(6), P),
        (S, alive(4), IG), (S, alive(5), IG), (S, alive(6), P),
        (D, alive(4), IG), (D, alive(5), IG), (D, alive(6), P),
        (L, alive(5), IG), (L, alive(6), P),
        # suspect
        (A, suspect(4), IG), (A, suspect(5), P), (A, suspect(6), P),
        (S, suspect(4), IG), (S, suspect(5), C), (S, suspect(6), C),
        (D, suspect(5), IG), (L, suspect(6), IG),
        # dead
        (A, dead(4), IG), (A, dead(5), P), (A, dead(6), P),
        (S, dead(4), IG), (S, dead(5), P),
        (D, dead(5), IG), (D, dead(5, by="x"), P), (L, dead(6), IG),
    ],
)  # fmt: skip
def test_precedence_against_stale_equal_and_newer_incarnations(
    state: MemberState, rumour: Alive | Suspect | Dead, expected: Verdict
) -> None:
    assert precedence(record(state, 5), rumour, local_name="me") == expected


@pytest.mark.parametrize("rumour", [suspect(1), dead(1)])
def test_precedence_ignores_suspect_and_dead_about_unknown_members(rumour: Suspect | Dead) -> None:
    assert precedence(None, rumour, local_name="me") == IG
    assert precedence(None, alive(0), local_name="me") == P


@pytest.mark.parametrize(
    ("rumour", "expected"),
    [(suspect(2), IG), (suspect(3), R), (suspect(7), R), (dead(3), R), (alive(3), IG), (alive(4), R)],
)
def test_precedence_about_the_local_member_refutes(rumour: Alive | Suspect | Dead, expected: Verdict) -> None:
    assert precedence(record(A, 3), rumour, local_name="x") == expected


def test_core_applies_alive_suspect_dead_in_order_and_emits_events() -> None:
    core = make_core(0)
    add_alive(core, 1, incarnation=2)
    core.on_suspect(1.0, Suspect(name="m1", incarnation=2, by="m2"))
    assert state_of(core, "m1") == (S, 2)
    core.on_alive(2.0, Alive(name="m1", address=address(1), incarnation=2, metadata=Metadata()))
    assert state_of(core, "m1") == (S, 2), "an equal incarnation must not clear a suspicion"
    core.on_alive(2.0, Alive(name="m1", address=address(1), incarnation=3, metadata=Metadata()))
    assert state_of(core, "m1") == (A, 3)
    core.on_dead(3.0, Dead(name="m1", incarnation=3, by="m2"))
    assert state_of(core, "m1") == (S, 3), "another member's verdict on a live member is a suspicion"
    window = 2 * core.config.probe_interval
    core.tick(3.0 + window)  # no refutation within a round trip: the verdict is ours too
    assert state_of(core, "m1") == (D, 3)
    core.on_dead(3.0 + window, Dead(name="m1", incarnation=3, by="m1"))
    assert state_of(core, "m1") == (L, 3)
    assert kinds(core) == [
        (EventKind.JOINED, "m1"), (EventKind.SUSPECT, "m1"), (EventKind.ALIVE, "m1"),
        (EventKind.SUSPECT, "m1"), (EventKind.DEAD, "m1"), (EventKind.LEFT, "m1"),
    ]  # fmt: skip


def test_a_verdict_on_a_member_we_suspected_long_enough_applies_at_once() -> None:
    core = make_core(0)
    add_alive(core, 1, incarnation=2)
    core.on_suspect(1.0, Suspect(name="m1", incarnation=2, by="m2"))
    core.on_dead(1.0 + 2 * core.config.probe_interval, Dead(name="m1", incarnation=2, by="m2"))
    assert state_of(core, "m1") == (D, 2)


def test_a_verdict_refuted_in_time_kills_nobody() -> None:
    core = make_core(0)
    add_alive(core, 1, incarnation=2)
    core.on_dead(1.0, Dead(name="m1", incarnation=2, by="m5"))  # m5 was cut off alone, now healed
    core.on_alive(1.1, Alive(name="m1", address=address(1), incarnation=3, metadata=Metadata()))
    core.tick(60.0)
    assert state_of(core, "m1") == (A, 3)
    assert EventKind.DEAD not in [k for k, _ in kinds(core)]


def test_a_stale_suspicion_of_us_is_acked_with_our_refutation() -> None:
    """A ping carrying a suspicion of us older than our incarnation (its sender missed our refutation)
    is answered with our alive piggybacked on the ack: the rumours are handled before the ping."""
    a, b = make_core(0), make_core(1)
    add_alive(a, 1, incarnation=0)
    a.on_suspect(1.0, Suspect(name="m0", incarnation=0, by="m1"))  # a refutes: incarnation 1
    for _ in range(20):
        a.outgoing()
        a.tick(a.next_deadline())  # the refutation's rumours run out
    a.outgoing()
    packet = seal(b.keyring, encode_body([
        encode_message(Ping(seq=7, target="m0")),
        encode_message(Suspect(name="m0", incarnation=0, by="m1")),
    ]))  # fmt: skip
    a.receive(30.0, address(1), packet)
    acks = decode_all(a.outgoing())
    assert Ack(seq=7) in acks
    assert Alive(name="m0", address=address(0), incarnation=1, metadata=Metadata()) in acks


def test_a_suspect_is_pinged_with_the_suspicion_before_it_runs_out() -> None:
    core = make_core(0)
    add_alive(core, 1, incarnation=2)
    core.outgoing()
    core.on_suspect(1.0, Suspect(name="m1", incarnation=2, by="m2"))
    core._next_probe_at = core._next_gossip_at = float("inf")  # no probe round or gossip due: only it
    suspicion = core._suspicions["m1"]
    last_call = suspicion.deadline - core.config.probe_interval
    assert core.next_deadline() <= last_call
    core.tick(last_call)
    sent = decode_all(core.outgoing())
    assert any(isinstance(m, Ping) and m.target == "m1" for m in sent)
    assert Suspect(name="m1", incarnation=2, by="m0") in sent


def test_refutation_raises_incarnation_and_broadcasts_alive() -> None:
    core = make_core(0)
    add_alive(core, 1)
    core.outgoing()
    core.on_suspect(1.0, Suspect(name="m0", incarnation=0, by="m1"))
    assert core.incarnation == 1
    assert core.counters.refutations == 1
    core.on_dead(1.0, Dead(name="m0", incarnation=4, by="m1"))
    assert core.incarnation == 5
    core.on_suspect(1.0, Suspect(name="m0", incarnation=2, by="m1"))  # stale: ignored
    assert core.incarnation == 5
    assert core.member("m0") is not None and core.member("m0").state == A  # type: ignore[union-attr]
    core.tick(core.next_deadline() + 1.0)
    msgs = decode_all(core.outgoing())
    assert Alive(name="m0", address=address(0), incarnation=5, metadata=Metadata()) in msgs


def test_refutation_reaches_the_suspecter_over_the_wire() -> None:
    a, b = make_core(0), make_core(1)
    cores = {a.address: a, b.address: b}
    b.join(0.0, [a.address])
    exchange(cores, 0.0)
    a.on_suspect(1.0, Suspect(name="m1", incarnation=0, by="m0"))
    a.tick(a.next_deadline())  # gossips the suspicion (and pings carry it)
    for t in (2.0, 3.0, 4.0):
        exchange(cores, t)
        a.tick(t)
        b.tick(t)
    exchange(cores, 4.0)
    assert state_of(a, "m1") == (A, 1)
    assert b.incarnation == 1


def test_suspicion_confirmations_shrink_the_timeout_to_the_minimum() -> None:
    config = GossipConfig.lan()
    core = make_core(0, config=config)
    for i in range(1, 10):
        add_alive(core, i)
    n = core.live_count()
    lo, hi = config.suspicion_min(n), config.suspicion_max(n)
    core.on_suspect(10.0, Suspect(name="m1", incarnation=0, by="m2"))
    assert core.next_deadline() <= 10.0 + hi
    s = core._suspicions["m1"]
    assert s.deadline == pytest.approx(10.0 + hi)
    core.on_suspect(10.5, Suspect(name="m1", incarnation=0, by="m2"))  # same member: not independent
    assert s.deadline == pytest.approx(10.0 + hi)
    core.on_suspect(10.5, Suspect(name="m1", incarnation=0, by="m3"))
    mid = s.deadline
    assert 10.0 + lo < mid < 10.0 + hi
    core.on_suspect(10.6, Suspect(name="m1", incarnation=0, by="m4"))
    assert s.deadline == pytest.approx(10.0 + lo)
    core.tick(10.0 + lo)
    assert state_of(core, "m1") == (D, 0)


def test_suspicion_without_lifeguard_uses_the_fixed_minimum() -> None:
    s = Suspicion(start=0.0, first="a", k=0, minimum=4.0, maximum=4.0)
    assert s.deadline == 4.0
    assert not s.confirm("b")


def test_retransmit_limit_bounds_how_often_a_rumour_is_sent() -> None:
    queue = RumourQueue()
    queue.enqueue("x", b"rumour-x")
    limit = formulas.retransmit_limit(4, 10)  # 8
    sent = 0
    while queue.take(1000, limit):
        sent += 1
    assert sent == limit == 8


def test_newer_rumour_invalidates_older_one_about_the_same_member() -> None:
    queue = RumourQueue()
    queue.enqueue("x", b"old")
    queue.take(1000, 10)
    queue.enqueue("x", b"new")
    queue.enqueue("y", b"other")
    assert len(queue) == 2
    assert queue.transmits("x") == 0
    assert sorted(queue.take(1000, 10)) == [b"new", b"other"]


def test_least_sent_rumours_go_first_and_fill_the_budget() -> None:
    queue = RumourQueue()
    queue.enqueue("a", b"a" * 10)
    queue.take(1000, 10)
    queue.enqueue("b", b"b" * 10)
    assert queue.take(15, 10) == [b"b" * 10]


def test_metadata_update_raises_incarnation_and_disseminates() -> None:
    a, b = make_core(0), make_core(1)
    cores = {a.address: a, b.address: b}
    b.join(0.0, [a.address])
    exchange(cores, 0.0)
    a.events()
    new = Metadata(role="frontend", zone="b", addresses={"ws": "10.0.0.1:80"}, load=0.5,
                   state=ServingState.DRAINING)  # fmt: skip
    b.update_metadata(1.0, new)
    assert b.incarnation == 1
    b.tick(b.next_deadline())
    while b.pending_rumours():
        b.tick(b.next_deadline())
        exchange(cores, 1.0)
    seen = a.member("m1")
    assert seen is not None and seen.metadata == new and seen.incarnation == 1
    assert (EventKind.UPDATED, "m1") in kinds(a)


def test_metadata_larger_than_the_limit_is_refused() -> None:
    core = make_core(0)
    with pytest.raises(LocalProtocolError, match=str(MAX_METADATA_BYTES)):
        core.update_metadata(0.0, Metadata(addresses={"k": "v" * MAX_METADATA_BYTES}))


def test_ping_is_acked_only_for_our_name() -> None:
    a, b = make_core(0), make_core(1)
    from gossip.wire import encode_body, encode_message, seal

    from .helpers import KEYRING

    for target, acked in (("m1", True), ("someone-else", False)):
        b.receive(0.0, a.address, seal(KEYRING, encode_body([encode_message(Ping(seq=7, target=target))])))
        msgs = decode_all(b.outgoing())
        assert (Ack(seq=7) in msgs) == acked


def test_failed_probe_goes_indirect_then_suspects_and_counts_missing_nacks() -> None:
    core = make_core(0)
    for i in range(1, 6):
        add_alive(core, i)
    core.outgoing()
    core.tick(core._next_probe_at)
    probe = core._probe
    assert probe is not None
    core.tick(probe.timeout_at)
    indirect = [m for m in decode_all(core.outgoing()) if isinstance(m, IndirectPing)]
    assert len(indirect) == 3 and all(m.nack and m.target == probe.target for m in indirect)
    core.handle_nack(Nack(seq=probe.seq))
    core.tick(core._next_probe_at)
    assert state_of(core, probe.target) == (S, 0)
    assert core.awareness == 2  # three nacks expected, one received


def test_successful_probe_lowers_awareness() -> None:
    core = make_core(0)
    add_alive(core, 1)
    core._awareness = 3
    core.tick(core._next_probe_at)
    assert core._probe is not None
    core.handle_ack(1.0, Ack(seq=core._probe.seq))
    assert core.awareness == 2


def test_indirect_ping_relays_ack_or_sends_nack() -> None:
    core = make_core(0)
    core.handle_indirect_ping(
        0.0, address(5), IndirectPing(seq=42, target="m1", target_address=address(1), nack=True)
    )
    (ping,) = decode_all(out := core.outgoing())[:1]
    assert isinstance(ping, Ping) and out[0].dst == address(1)
    core.tick(1.0)  # past the probe timeout: a nack goes back to the requester
    out = core.outgoing()
    assert out[0].dst == address(5) and Nack(seq=42) in decode_all(out)


def test_leave_broadcasts_left_and_stops_refuting() -> None:
    a, b = make_core(0), make_core(1)
    cores = {a.address: a, b.address: b}
    b.join(0.0, [a.address])
    exchange(cores, 0.0)
    b.leave(1.0)
    exchange(cores, 1.0)
    assert state_of(a, "m1") == (L, 0)
    b.on_suspect(2.0, Suspect(name="m1", incarnation=0, by="m0"))
    assert b.incarnation == 0


def test_push_pull_merges_remote_dead_as_suspect() -> None:
    a, b = make_core(0), make_core(1)
    add_alive(a, 2)
    add_alive(b, 2)
    b.on_dead(0.0, Dead(name="m2", incarnation=0, by="m1"))
    cores = {a.address: a, b.address: b}
    b.join(0.0, [a.address])
    exchange(cores, 0.0)
    assert state_of(a, "m2") == (S, 0)


def test_config_profiles_validate() -> None:
    for profile in (GossipConfig.lan(), GossipConfig.local(), GossipConfig.wan()):
        assert dataclasses.replace(profile) == profile

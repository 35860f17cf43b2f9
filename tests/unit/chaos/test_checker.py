"""The chaos checker on hand-made logs: a clean run passes, and each violation is caught."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos.checker import CONTINUITY_LOST, EpochOrder, check, split_serial

E = "ep1"


def ack(
    n: int, *, channel: str = "c", epoch: str = E, outcome: str = "ack", client: str = "p"
) -> dict[str, Any]:
    return {
        "pid": f"{client}:{n}",
        "client": client,
        "channel": channel,
        "outcome": outcome,
        "serial": f"{epoch}:{n}" if outcome == "ack" else None,
        "code": None,
        "t": float(n),
    }


def conn(t: float, cid: str = "C1", state: str = "connected") -> dict[str, Any]:
    return {
        "k": "conn",
        "t": t,
        "state": state,
        "id": cid,
        "server": "continuity.fe-a1",
        "resumed": False,
        "code": None,
    }


def attach(t: float, serial: str | None, *, resumed: bool = False, code: int | None = None) -> dict[str, Any]:
    return {"k": "attach", "t": t, "resumed": resumed, "code": code, "serial": serial, "update": False}


def msg(
    n: int, *, epoch: str = E, pid: str | None = None, t: float | None = None, connected: bool = True
) -> dict[str, Any]:
    return {
        "k": "msg",
        "t": float(n) + 0.5 if t is None else t,
        "serial": f"{epoch}:{n}",
        "pid": pid or f"p:{n}",
        "connected": connected,
    }


def sub(entries: list[dict[str, Any]], *, attached_at_end: bool = True, client: str = "s") -> dict[str, Any]:
    return {"client": client, "channel": "c", "attached_at_end": attached_at_end, "entries": entries}


def clean_log() -> list[dict[str, Any]]:
    return [conn(0), attach(0.1, f"{E}:0"), *(msg(n) for n in range(1, 6))]


def only(counts: dict[str, int], kind: str) -> bool:
    return counts[kind] > 0 and all(v == 0 for k, v in counts.items() if k != kind)


def test_a_clean_run_passes() -> None:
    v = check([ack(n) for n in range(1, 6)], [sub(clean_log())])
    assert v.ok, v.examples
    assert v.delivered == 5 and not v.announced


def test_a_lost_ack_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), *(msg(n) for n in range(1, 5))]  # 5 never arrives
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert only(v.counts, "lost") and v.counts["lost"] == 1


def test_a_duplicate_is_caught() -> None:
    entries = [*clean_log(), msg(5, t=9.0)]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert only(v.counts, "duplicated")


def test_a_payload_under_two_serials_is_a_duplicate() -> None:
    entries = [*clean_log(), msg(6, pid="p:5")]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert v.counts["duplicated"] == 1


def test_out_of_order_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(3), msg(2), msg(4)]
    v = check([ack(n) for n in range(1, 5)], [sub(entries)])
    assert v.counts["out_of_order"] == 1 and v.counts["lost"] == 0 and v.counts["duplicated"] == 0


def test_a_silent_gap_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2), msg(5)]  # 3, 4 skipped, nothing said
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert v.counts["silent_gap"] == 1 and v.counts["lost"] == 2


def test_a_silent_new_epoch_is_a_gap() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, epoch="ep2")]
    v = check([ack(1), ack(2, epoch="ep2")], [sub(entries)])
    assert only(v.counts, "silent_gap")


@pytest.mark.parametrize(
    ("announcement", "cause"),
    [
        ([attach(2.6, f"{E}:4", code=CONTINUITY_LOST)], "attached without RESUMED, 90003"),
        ([conn(2.6, "C2"), attach(2.7, f"{E}:2", resumed=True)], "new connectionId (code None)"),
    ],
)
def test_an_announced_gap_is_not_a_violation(announcement: list[dict[str, Any]], cause: str) -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2), *announcement, msg(5)]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert v.ok, v.examples
    assert v.announced_lost == 2
    assert v.causes() == {cause: 1}


def test_a_resumed_attach_does_not_announce_a_gap() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2), attach(2.6, f"{E}:2", resumed=True), msg(5)]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert v.counts["silent_gap"] == 1


def test_split_brain_two_payloads_under_one_serial() -> None:
    # Two homes numbered the same channel: subscriber t sees another payload at serial 3.
    entries_t = [conn(0, "C9"), attach(0.1, f"{E}:0"), msg(1), msg(2), msg(3, pid="q:1")]
    v = check([ack(n) for n in range(1, 4)], [sub(clean_log()[:5]), sub(entries_t, client="t")])
    assert v.counts["split_brain"] >= 1


def test_split_brain_a_message_while_not_connected() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), conn(1.6, state="disconnected"), msg(2)]
    v = check([ack(1), ack(2)], [sub(entries)])
    assert only(v.counts, "split_brain")


def test_a_nacked_publish_delivered_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, pid="p:9")]
    v = check([ack(1), ack(9, outcome="nack")], [sub(entries)])
    assert only(v.counts, "nacked_delivered")


def test_a_failed_publish_delivered_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, pid="p:9")]
    v = check([ack(1), ack(9, outcome="failed")], [sub(entries)])
    assert only(v.counts, "failed_delivered")


def test_an_indeterminate_publish_may_be_delivered_once() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, pid="q:9"), msg(3)]
    v = check([ack(1), ack(9, outcome="indeterminate", client="q"), ack(3)], [sub(entries)])
    assert v.ok, v.examples


def test_a_payload_under_another_serial_than_its_ack() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1, pid="p:2"), msg(2, pid="p:1")]
    v = check([ack(1), ack(2)], [sub(entries)])
    assert v.counts["serial_mismatch"] == 2


def test_acks_before_the_attach_are_not_expected() -> None:
    entries = [conn(0), attach(3.1, f"{E}:3"), msg(4), msg(5)]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert v.ok, v.examples


def test_a_subscriber_that_left_is_judged_up_to_its_last_message() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2)]
    v = check([ack(n) for n in range(1, 6)], [sub(entries, attached_at_end=False)])
    assert v.ok and v.not_attached_at_end == ["s"]


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown publish outcome"):
        check([ack(1, outcome="maybe")], [])


def test_epochs_rank_by_first_sighting() -> None:
    order = EpochOrder([(5.0, "zz:1"), (1.0, "aa:7"), (9.0, "mm:0")])
    assert order("aa:9") < order("zz:0") < order("mm:0")
    assert split_serial("a:b:12") == ("a:b", 12)


def test_a_serial_reused_for_another_payload_does_not_hide_a_loss() -> None:
    # Serial 2 was ACKed to p:2, then renumbered to q:7: the subscriber never got p:2.
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, pid="q:7")]
    v = check([ack(1), ack(2)], [sub(entries)])
    assert v.counts["lost"] == 1 and v.counts["split_brain"] == 1


# -- beyond the model: entries a double fault destroyed (frontend/simloss.py) ------------------------


def destroyed_at(*serials: str) -> Any:
    return lambda channel, serial: channel == "c" and serial in serials


def test_two_payloads_at_a_destroyed_serial_are_beyond_the_model() -> None:
    # Both copies of serial 3 died; the next home continued an older copy and numbered q:1 at 3.
    entries_t = [conn(0, "C9"), attach(0.1, f"{E}:0"), msg(1), msg(2), msg(3, pid="q:1")]
    logs = [sub(clean_log()[:5]), sub(entries_t, client="t")]
    v = check([ack(n) for n in range(1, 4)], logs, destroyed=destroyed_at(f"{E}:3"))
    # (t never got p:3, ACKed at the destroyed serial: a loss beyond the model too)
    assert v.ok and v.beyond_model == {"split_brain": 1, "lost": 1}, (v.examples, v.beyond_model)
    v = check([ack(n) for n in range(1, 4)], logs, destroyed=destroyed_at(f"{E}:2"))
    assert v.counts["split_brain"] == 1 and v.counts["lost"] == 1 and not v.beyond_model


def test_a_destroyed_acked_serial_never_delivered_is_beyond_the_model() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2, pid="q:7")]
    v = check([ack(1), ack(2)], [sub(entries)], destroyed=destroyed_at(f"{E}:2"))
    assert v.ok and v.beyond_model == {"lost": 1, "split_brain": 1}, (v.examples, v.beyond_model)
    v = check([ack(n) for n in range(1, 6)], [sub(clean_log()[:5])], destroyed=destroyed_at(f"{E}:4"))
    assert v.counts["lost"] == 1 and v.beyond_model == {"lost": 1}  # 4 excused, 5 not


def test_a_message_while_not_connected_is_split_brain_even_at_a_destroyed_serial() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), conn(1.6, state="disconnected"), msg(2)]
    v = check([ack(1), ack(2)], [sub(entries)], destroyed=destroyed_at(f"{E}:2"))
    assert only(v.counts, "split_brain") and not v.beyond_model


# -- 5: a subscriber's serial never moves backwards ------------------------------------------------


def test_an_attach_that_moves_the_serial_back_is_caught_even_when_announced() -> None:
    # Seed 12313: a stale home answered ATTACHED at 2 (with 90003) to a subscriber that held 4.
    entries = [
        conn(0),
        attach(0.1, f"{E}:0"),
        *(msg(n) for n in range(1, 5)),
        attach(4.6, f"{E}:2", code=CONTINUITY_LOST),
        msg(5),
    ]
    v = check([ack(n) for n in range(1, 6)], [sub(entries)])
    assert only(v.counts, "serial_backwards") and v.counts["serial_backwards"] == 1
    assert v.examples[0]["held"] == [0, 4]


def test_an_attach_back_into_an_older_epoch_is_caught() -> None:
    # New epoch ep2 announced (fine), then ATTACHED back in ep1: backwards.
    entries = [
        conn(0),
        attach(0.1, f"{E}:0"),
        msg(1),
        msg(2),
        attach(2.6, "ep2:0", code=CONTINUITY_LOST),
        attach(2.7, f"{E}:1", code=CONTINUITY_LOST),
    ]
    v = check([ack(1), ack(2)], [sub(entries)])
    assert v.counts["serial_backwards"] == 1


def test_an_attach_at_the_serial_held_or_later_is_fine() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2), attach(2.6, f"{E}:2", resumed=True), msg(3)]
    v = check([ack(n) for n in range(1, 4)], [sub(entries)])
    assert v.ok, v.examples


# -- 6: publisher order -------------------------------------------------------------------------------


def test_two_publishes_numbered_in_the_reverse_of_their_send_order_are_caught() -> None:
    # Issue 11: sent k=49 then k=50 (pipelined), numbered 50 before 49, every subscriber saw the swap.
    pubs = [ack(1), {**ack(2), "seq": 3}, {**ack(3), "seq": 2}]
    pubs[0]["seq"] = 1
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), msg(2), msg(3)]
    v = check(pubs, [sub(entries)])
    assert only(v.counts, "publisher_order")
    assert v.counts["publisher_order"] == 2  # the ACK side once, this subscriber once
    ack_side = next(ex for ex in v.examples if "sent_after" in ex)
    assert ack_side["pid"] == "p:2" and ack_side["sent_after"] == "p:3"


def test_publisher_order_falls_back_to_the_pid_number() -> None:
    pubs = [{**ack(1), "pid": "w:0:2"}, {**ack(2), "pid": "w:0:1"}]
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1, pid="w:0:2"), msg(2, pid="w:0:1")]
    v = check(pubs, [sub(entries)])
    assert only(v.counts, "publisher_order")


def test_interleaved_publishers_in_their_own_order_are_fine() -> None:
    pubs = [ack(1, client="a"), ack(2, client="b"), ack(3, client="a"), ack(4, client="b")]
    entries = [conn(0), attach(0.1, f"{E}:0"), *(msg(n, pid=p["pid"]) for n, p in enumerate(pubs, 1))]
    v = check(pubs, [sub(entries)])
    assert v.ok, v.examples


# -- 7: a discontinuity needs an absence or a fault longer than the TTL ----------------------------------


def _announced_after(down: float, up: float) -> list[dict[str, Any]]:
    return [
        conn(0),
        attach(0.1, f"{E}:0"),
        msg(1),
        conn(down, state="disconnected"),
        conn(up),
        attach(up + 0.1, f"{E}:4", code=CONTINUITY_LOST),
        msg(5, t=up + 0.2),
    ]


def test_a_90003_after_a_short_absence_is_caught() -> None:
    # Seed 12313: 90003 after a 5 s partition, with a 20 s TTL.
    v = check([ack(1), ack(5)], [sub(_announced_after(10.0, 15.0))], ttl_s=20.0, faults=[])
    assert only(v.counts, "discontinuity_within_ttl")
    assert v.examples[0]["longest_away_s"] == 5.0


def test_a_90003_after_an_absence_longer_than_the_ttl_is_fine() -> None:
    v = check([ack(1), ack(5)], [sub(_announced_after(10.0, 33.0))], ttl_s=20.0, faults=[])
    assert v.ok, v.examples


def test_a_90003_explained_by_a_long_fault_on_that_client_only() -> None:
    long_cut = {"kind": "tunnel_cut", "target": "s", "started": 9.0, "ended": 32.0}
    entries = _announced_after(10.0, 15.0)
    assert check([ack(1), ack(5)], [sub(entries)], ttl_s=20.0, faults=[long_cut]).ok
    other = {**long_cut, "target": "someone-else"}
    v = check([ack(1), ack(5)], [sub(entries)], ttl_s=20.0, faults=[other])
    assert only(v.counts, "discontinuity_within_ttl")


def test_a_new_connection_id_after_a_short_absence_is_caught() -> None:
    entries = [conn(0), attach(0.1, f"{E}:0"), msg(1), conn(2, state="disconnected"), conn(3, "C2")]
    v = check([ack(1)], [sub(entries)], ttl_s=20.0, faults=[])
    assert only(v.counts, "discontinuity_within_ttl")


def test_a_90003_after_a_long_absence_broken_by_brief_reconnections_is_fine() -> None:
    # Seed 12313 (sub13): away 27 s, a new connectionId at 121.8 while chaos:1 re-attached, cut
    # again for 3.8 s, then ATTACHED with 90003: the long absence explains it.
    entries = [
        conn(0),
        attach(0.1, f"{E}:0"),
        msg(1),
        conn(94.9, state="disconnected"),
        conn(121.8, "C2"),
        conn(122.3, "C2", state="disconnected"),
        conn(126.0, "C2"),
        attach(126.6, f"{E}:4", code=CONTINUITY_LOST),
        msg(5, t=126.7),
    ]
    assert check([ack(1), ack(5)], [sub(entries)], ttl_s=20.0, faults=[]).ok

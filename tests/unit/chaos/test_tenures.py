"""Home tenures from the node logs: two homes at once, and a home taken from a stale copy."""

from __future__ import annotations

from typing import Any

from bench.chaos.checker import check
from bench.chaos.tenures import HEAL_GRACE_S, ClusterRecord, stale_homes, tenures, two_homes


def acquired(
    t: float, node: str, *, epoch: str = "ep", last_seq: int = 0, source: str = "fresh", channel: str = "c"
) -> dict[str, Any]:
    return {
        "t": t,
        "node": node,
        "event": "channel.home_acquired",
        "channel": channel,
        "epoch": epoch,
        "last_seq": last_seq,
        "source": source,
    }


def handed_over(t: float, node: str, channel: str = "c") -> dict[str, Any]:
    return {"t": t, "node": node, "event": "channel.handed_over", "channel": channel}


def test_a_clean_handover_is_one_home_at_a_time() -> None:
    rec = ClusterRecord(
        events=[acquired(1, "a"), handed_over(5, "a"), acquired(5.01, "b", source="handover")]
    )
    assert [(x.node, x.start, x.end) for x in tenures(rec)] == [("a", 1, 5), ("b", 5.01, float("inf"))]
    assert two_homes(rec) == []


def test_two_nodes_acquiring_at_once_are_caught() -> None:
    # Seed 12313: fe-b2 and fe-a1 took chaos:1 34 ms apart, with no partition between them.
    rec = ClusterRecord(
        events=[
            acquired(10.0, "fe-b2", epoch="tk1z", source="fresh"),
            acquired(10.006, "fe-b2", epoch="dpk3", last_seq=181, source="copy:fe-a2"),
            acquired(10.04, "fe-a1", epoch="dpk3", last_seq=341, source="replica"),
        ],
        end=20.0,
    )
    found = two_homes(rec)
    assert len(found) == 1 and found[0]["nodes"] == ["fe-b2", "fe-a1"]
    assert found[0]["overlap_s"] == 9.96


def test_a_partition_excuses_two_homes_until_the_grace_after_the_heal() -> None:
    events = [acquired(1, "fe-a1"), acquired(12, "fe-b1", source="replica")]
    cut = {"from": 10.0, "to": 15.0, "side": ["fe-a1", "fe-a2"]}
    demoted = {"t": 15.0 + HEAL_GRACE_S - 1, "node": "fe-a1", "event": "channel.homes_revalidated"}
    assert two_homes(ClusterRecord(events=[*events, demoted], separations=[cut])) == []
    late = {**demoted, "t": 15.0 + HEAL_GRACE_S + 2}
    found = two_homes(ClusterRecord(events=[*events, late], separations=[cut]))
    assert len(found) == 1 and found[0]["overlap_s"] == 2.0
    # The same overlap between two nodes on one side of the cut is not excused.
    same_side = [acquired(1, "fe-a1"), acquired(12, "fe-a2", source="replica"), demoted]
    assert two_homes(ClusterRecord(events=same_side, separations=[cut]))


def test_a_dead_node_holds_nothing() -> None:
    rec = ClusterRecord(
        events=[acquired(1, "a"), acquired(4, "b", source="replica")],
        down=[{"node": "a", "from": 3.0, "to": 6.0}],
    )
    assert two_homes(rec) == []
    assert tenures(rec)[0].end == 3.0


def test_a_home_from_a_copy_older_than_an_ack_is_stale() -> None:
    rec = ClusterRecord(events=[acquired(10.0, "b", epoch="ep", last_seq=181, source="copy:fe-a2")])
    found = stale_homes(rec, [("c", 9.0, "ep", 341), ("c", 11.0, "ep", 342)])
    assert len(found) == 1 and found[0]["acked"] == 341 and found[0]["last_seq"] == 181
    assert stale_homes(rec, [("c", 9.0, "ep", 181), ("c", 11.0, "ep", 342)]) == []


def test_a_new_epoch_while_acked_history_is_retained_is_stale() -> None:
    rec = ClusterRecord(events=[acquired(10.0, "b", epoch="new", source="fresh")], retention_s=21.0)
    assert stale_homes(rec, [("c", 5.0, "old", 12)])
    assert stale_homes(rec, [("c", -20.0, "old", 12)]) == []  # older than the retention: expired


def test_the_checker_reports_both() -> None:
    events = [
        acquired(1.0, "fe-a1", epoch="E"),
        acquired(2.0, "fe-b2", epoch="E", last_seq=0, source="copy:fe-a2"),
    ]
    pub = {
        "pid": "p:1",
        "client": "p",
        "channel": "c",
        "outcome": "ack",
        "serial": "E:1",
        "code": None,
        "t": 1.5,
    }
    v = check([pub], [], cluster=ClusterRecord(events=events, end=3.0))
    assert v.counts["two_homes"] == 1 and v.counts["stale_home"] == 1
    assert not v.ok


def test_a_cut_off_node_taking_a_stale_copy_is_not_stale_home() -> None:
    # The short run: fe-b2, partitioned alone, re-acquired from its replica copy (196 while 215 was
    # ACKed); blocked without a replica in another zone, it numbers nothing durable.
    events = [acquired(65.5, "fe-b2", epoch="E", last_seq=196, source="replica")]
    acks = [("c", 60.0, "E", 215)]
    cut = {"from": 59.3, "to": 66.0, "side": ["fe-b2"]}
    assert stale_homes(ClusterRecord(events=events, separations=[cut]), acks) == []
    other_side = {**cut, "side": ["fe-a1", "fe-a2"]}
    assert stale_homes(ClusterRecord(events=events, separations=[other_side]), acks)

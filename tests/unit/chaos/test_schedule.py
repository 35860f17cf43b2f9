"""The chaos fault schedule: deterministic, every kind present, one long cut, blame windows."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from bench.chaos.schedule import BLAME_AFTER_S, CLUSTER_KINDS, KINDS, Targets, generate, implicated, only

TARGETS = Targets(
    frontends=["fe-a1", "fe-b1"],
    isolatable=["fe-b1"],
    zone_partition=True,
    routers=["rt1", "rt2"],
    clients=["c1", "c2", "slow"],
    slow=["slow"],
    long_cut=["c2"],
)


def test_the_same_seed_gives_the_same_schedule() -> None:
    a = generate(7, 30, TARGETS, ttl_s=6, long_cut_s=9.5)
    assert a == generate(7, 30, TARGETS, ttl_s=6, long_cut_s=9.5)
    assert a != generate(8, 30, TARGETS, ttl_s=6, long_cut_s=9.5)


@pytest.mark.parametrize("seed", range(20))
def test_every_kind_and_exactly_one_long_cut(seed: int) -> None:
    faults = generate(seed, 20, TARGETS, ttl_s=6, long_cut_s=9.5)
    assert len(faults) == 20 and [f.index for f in faults] == list(range(20))
    assert set(Counter(f.kind for f in faults)) == set(KINDS) - {"zone_loss"}  # TARGETS has no zones
    longs = [f for f in faults if f.long]
    assert len(longs) == 1 and longs[0].kind == "tunnel_cut" and longs[0].target == "c2"
    assert longs[0].duration > 6
    assert all(f.duration <= 6 * 0.8 for f in faults if f.kind == "tunnel_cut" and not f.long)
    cluster = [f.at for f in faults if f.kind in CLUSTER_KINDS]
    assert cluster == sorted(cluster)


def test_without_netns_there_are_no_partitions() -> None:
    targets = Targets(
        frontends=["fe-a1"],
        isolatable=[],
        zone_partition=False,
        routers=["rt1"],
        clients=["c1"],
        slow=[],
        long_cut=["c1"],
    )
    kinds = {f.kind for f in generate(1, 40, targets, ttl_s=6, long_cut_s=9.5)}
    assert kinds == {"fe_kill", "fe_drain", "router_kill", "tunnel_cut"}


def test_only_picks_by_index() -> None:
    faults = generate(3, 10, TARGETS, ttl_s=6, long_cut_s=9.5)
    assert [f.index for f in only(faults, [4, 1])] == [1, 4]
    with pytest.raises(ValueError, match="no fault"):
        only(faults, [10])


def test_implicated_faults_started_before_and_ended_recently() -> None:
    applied = [
        {"index": 0, "started": 1.0, "ended": 2.0},
        {"index": 1, "started": 5.0, "ended": 8.0},
        {"index": 2, "started": 30.0, "ended": None},
    ]
    assert implicated(applied, 10.0) == [0, 1]
    assert implicated(applied, 2.0 + BLAME_AFTER_S + 1) == [1]
    assert implicated(applied, 40.0) == [2]


ZONED = replace(
    TARGETS,
    frontends=["fe-b1", "fe-a1", "fe-a2", "fe-b2"],
    zones={"a": ["fe-a1", "fe-a2"], "b": ["fe-b1", "fe-b2"]},
)


@pytest.mark.parametrize("seed", range(20))
def test_the_patterns_only_intensify_the_earlier_schedule(seed: int) -> None:
    base = generate(seed, 40, ZONED, ttl_s=6, long_cut_s=9.5, patterns=False)
    faults = generate(seed, 40, ZONED, ttl_s=6, long_cut_s=9.5)
    assert set(Counter(f.kind for f in faults)) == set(KINDS)
    assert [(f.index, f.at) for f in faults] == [(f.index, f.at) for f in base]
    losses = [f for f in faults if f.kind == "zone_loss"]
    assert len(losses) == 1
    was = base[losses[0].index]
    assert was.kind == "fe_kill" and was.target in ZONED.zones[losses[0].target]
    settling = [f for f in faults if f.router is not None]
    assert len(settling) == 2
    assert all(f.kind in ("fe_drain", "partition_fe", "partition_zone") for f in settling)
    assert all(f.router in ("rt1", "rt2", "both") and 0.3 <= f.router_down <= 3.0 for f in settling)
    changed = {f.index for f in losses + settling}
    assert [f for f in faults if f.index not in changed] == [f for f in base if f.index not in changed]


def test_the_patterns_are_seeded() -> None:
    assert generate(5, 40, ZONED, ttl_s=6, long_cut_s=9.5) == generate(5, 40, ZONED, ttl_s=6, long_cut_s=9.5)

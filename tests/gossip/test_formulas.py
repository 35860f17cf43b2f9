"""Table tests of the named SWIM/Lifeguard formulas (values checked against memberlist's definitions)."""

import math

import pytest

from gossip import formulas
from gossip.config import GossipConfig


@pytest.mark.parametrize(
    ("mult", "n", "interval", "expected"),
    [
        (4, 0, 1.0, 4.0),
        (4, 1, 1.0, 4.0),
        (4, 10, 1.0, 4.0),
        (4, 100, 1.0, 8.0),
        (4, 1000, 1.0, 12.0),
        (3, 5, 0.2, 0.6),
        (6, 50, 5.0, 30 * math.log10(50)),
    ],
)
def test_suspicion_timeout(mult: int, n: int, interval: float, expected: float) -> None:
    assert formulas.suspicion_timeout(mult, n, interval) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mult", "n", "expected"),
    [(4, 0, 0), (4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12), (2, 200, 6), (3, 1000, 12)],
)
def test_retransmit_limit(mult: int, n: int, expected: int) -> None:
    assert formulas.retransmit_limit(mult, n) == expected


@pytest.mark.parametrize(
    ("confirmations", "k", "elapsed", "lo", "hi", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 0.0, 2.0, 30.0, 16.0),
        (2, 3, 0.0, 2.0, 30.0, 7.81),  # 30 - log(3)/log(4) * 28 = 7.8105, floored to the ms
        (3, 3, 0.0, 2.0, 30.0, 2.0),
        (4, 3, 0.0, 2.0, 30.0, 2.0),  # never below the minimum
        (0, 3, 5.0, 2.0, 30.0, 25.0),
        (3, 3, 5.0, 2.0, 30.0, -3.0),  # overdue
        (0, 0, 0.0, 2.0, 30.0, 2.0),  # no confirmations expected: the minimum
    ],
)
def test_remaining_suspicion_time(
    confirmations: int, k: int, elapsed: float, lo: float, hi: float, expected: float
) -> None:
    got = formulas.remaining_suspicion_time(confirmations, k, elapsed, lo, hi)
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("timeout", "awareness", "expected"), [(1.0, 0, 1.0), (1.0, 1, 2.0), (0.5, 7, 4.0), (0.2, 3, 0.8)]
)
def test_scale_timeout(timeout: float, awareness: int, expected: float) -> None:
    assert formulas.scale_timeout(timeout, awareness) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0), (200, 120.0)]
)
def test_push_pull_scale(n: int, expected: float) -> None:
    assert formulas.push_pull_scale(30.0, n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mult", "n", "expected"), [(4, 10, 2), (4, 4, 2), (4, 3, 0), (2, 10, 0), (6, 100, 4)]
)
def test_suspicion_confirmations_needed(mult: int, n: int, expected: int) -> None:
    assert formulas.suspicion_confirmations_needed(mult, n) == expected


def test_detection_bound_of_local_profile_for_five_members() -> None:
    # 9 intervals of 0.2 s + 0.1 s timeout, 3 * 2.0 s suspicion, (4 + 1) * 0.05 s gossip.
    assert GossipConfig.local().detection_bound(5) == pytest.approx(1.9 + 6.0 + 0.25)


def test_lan_profile_is_memberlists() -> None:
    c = GossipConfig.lan()
    assert (c.probe_interval, c.probe_timeout, c.indirect_checks) == (1.0, 0.5, 3)
    assert (c.suspicion_mult, c.suspicion_max_mult, c.gossip_interval, c.gossip_nodes) == (4, 6, 0.2, 3)
    assert c.push_pull_interval == 30.0
    assert (c.suspicion_min(10), c.suspicion_max(10)) == (4.0, 24.0)


@pytest.mark.parametrize(
    "changes",
    [{"probe_timeout": 2.0}, {"indirect_checks": -1}, {"gossip_nodes": 0}, {"probe_interval": 0.0}],
)
def test_config_rejects_out_of_range_values(changes: dict[str, float]) -> None:
    import dataclasses

    with pytest.raises(ValueError, match="must be in"):
        dataclasses.replace(GossipConfig.lan(), **changes)

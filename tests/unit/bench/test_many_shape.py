"""bench/many_shape.py: the shape that fits the open-file limit, the split over load processes and
the merge of their results (pure functions, no processes, no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.many_shape import FD_MARGIN, fit_channels, merge, per_delivery_us, plan


def test_fit_keeps_a_shape_that_fits() -> None:
    assert fit_channels(1250, 4, 20_000) == 1250
    assert fit_channels(5000, 4, None) == 5000


def test_fit_clamps_to_the_open_file_limit() -> None:
    # 5,000 x 4 = 20,000 sockets plus the server's own descriptors do not fit in 20,000.
    got = fit_channels(5000, 4, 20_000)
    assert got == (20_000 - FD_MARGIN) // 4 == 4975
    assert got * 4 + FD_MARGIN <= 20_000


def test_fit_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        fit_channels(0, 4, 20_000)
    assert fit_channels(10, 4, FD_MARGIN) == 0


@pytest.mark.parametrize(("channels", "procs"), [(4975, 8), (1250, 8), (3, 8), (1, 1), (10, 3)])
def test_plan_covers_every_channel_once(channels: int, procs: int) -> None:
    ranges = plan(channels, procs)
    assert len(ranges) == min(procs, channels)
    covered = [c for first, count in ranges for c in range(first, first + count)]
    assert covered == list(range(channels))
    sizes = [count for _, count in ranges]
    assert max(sizes) - min(sizes) <= 1


def result(received: int, start: float, last: float, lat: list[float], **kw: int) -> dict[str, Any]:
    base = {
        "connections": 8,
        "published": 2,
        "acked": 2,
        "nacked": 0,
        "cut": 0,
        "gaps": 0,
        "dupes": 0,
        "complete": 8,
    }
    return (
        base
        | kw
        | {
            "received": received,
            "publish_start_ms": start,
            "last_recv_ms": last,
            "latencies": lat,
        }
    )


def test_merge_sums_and_spans_from_first_publish_to_last_delivery() -> None:
    m = merge([result(8, 1000.0, 3000.0, [1.0, 2.0]), result(8, 1010.0, 5000.0, [3.0], gaps=1)])
    assert m["deliveries"] == 16
    assert m["connections"] == 16 and m["gaps"] == 1 and m["published"] == 4
    assert m["span_s"] == 4.0
    assert m["deliveries_per_s"] == 4.0
    assert sorted(m["latencies"]) == [1.0, 2.0, 3.0]


def test_merge_without_deliveries() -> None:
    m = merge([result(0, 1000.0, 0.0, [])])
    assert m["deliveries"] == 0 and m["deliveries_per_s"] is None and m["span_s"] is None


def test_cpu_per_delivery() -> None:
    assert per_delivery_us(2.0, 100_000) == 20.0
    assert per_delivery_us(1.0, 0) is None

"""bench/chaos/nodelogs.py: what a failing chaos run reports of the frontends' logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos import nodelogs

T0 = 1_800_000_000.0


def _line(at: float, event: str, level: str = "info", **fields: object) -> str:
    stamp = datetime.fromtimestamp(T0 + at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"event": event, "level": level, "timestamp": stamp, "node_id": "x", **fields})


def test_around_keeps_warnings_and_context_events_near_the_time_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "fe-a1.log", tmp_path / "fe-b2.log"
    a.write_text("\n".join([
        _line(10.0, "channel.continuity_lost", "warning", channel="c:1", why="w"),
        _line(30.0, "channel.continuity_lost", "warning", channel="c:2"),  # too far
        _line(11.0, "connection.resumed"),  # info, not a context event
        "Traceback (most recent call last):",  # not JSON
    ]) + "\n")  # fmt: skip
    b.write_text(_line(9.5, "channel.home_acquired", epoch="e", last_seq=3) + "\n")
    paths = [("fe-a1", a), ("fe-b2", b), ("fe-a2", tmp_path / "missing.log")]
    got = nodelogs.around(paths, T0, 10.2, 3.0)
    assert [line.split()[1:3] for line in got] == [
        ["fe-b2", "channel.home_acquired"],
        ["fe-a1", "channel.continuity_lost"],
    ]
    assert '"why": "w"' in got[1] and got[0].startswith("   9.500")
    assert nodelogs.around(paths, T0, 10.2, 3.0, limit=1) == got[:1]
    assert nodelogs.around(paths, T0, 100.0, 3.0) == []

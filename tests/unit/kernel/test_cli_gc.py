"""kernel/cli: a daemon runs with the collector thresholds GC_THRESHOLDS (not CPython's 700, 10, 10)."""

from __future__ import annotations

import gc

from kernel.cli import GC_THRESHOLDS, run_daemon


def test_run_daemon_sets_the_gc_thresholds() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    async def main(config: object) -> None:
        seen.append(gc.get_threshold())

    try:
        assert run_daemon("test", main, None, binds="nothing") == 0
        assert seen == [GC_THRESHOLDS]
        assert GC_THRESHOLDS[0] > 700
    finally:
        gc.set_threshold(*before)

"""The frontend's one clock: wall time in milliseconds, read only by the trio drivers.

The cores never read a clock: every entry point takes ``now_ms``, which the drivers read here (and
the simulation supplies from virtual time). Wall time, not a monotonic clock, because connection
keys, channel-log retention and peer-request deadlines are compared across hosts.
"""

from __future__ import annotations

import time


def wall_ms() -> int:
    return int(time.time() * 1000)

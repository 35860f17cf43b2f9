"""What both daemons' Prometheus registries share: ``process_*`` metrics, no ``_created`` series,
and the buckets of the latency histograms."""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector

# Every counter and histogram would also export a ``<name>_created`` timestamp series, which
# doubles the series count for no use here (Prometheus derives resets itself).
prometheus_client.disable_created_metrics()

# Seconds: from 1 ms to 30 s (a resume's catch-up may take seconds after a failover).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def new_registry() -> CollectorRegistry:
    """A registry of its own (tests run several daemons in one process) with ``process_*``
    (CPU seconds, resident memory, open fds, start time) of this process."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry

"""Prometheus metrics for one router, on a registry of its own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kernel.metrics import LATENCY_BUCKETS, new_registry

CONTENT_TYPE = CONTENT_TYPE_LATEST


class RouterMetrics:
    """Counters and gauges of one router; ``render()`` gives the Prometheus text."""

    def __init__(self) -> None:
        r = self.registry = new_registry()
        self.forward_seconds = Histogram(
            "continuity_router_forward_seconds",
            "A forwarded HTTP request, from sending it to a frontend to the end of the response streamed "
            "back (Comet long-polls included, so the top buckets hold parked /recv requests)",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.witness_requests = Counter(
            "continuity_router_witness_requests",
            "Zone-quorum grant requests from frontends, by result "
            "(granted|released|refused_other_zone|refused)",
            ["result"], registry=r,
        )
        self.requests = Counter(
            "continuity_router_requests", "Requests received, by kind (websocket|comet|http|local)",
            ["kind"], registry=r,
        )
        self.decisions = Counter(
            "continuity_router_decisions", "Routing decisions, by reason (owner, new, unavailable, ...)",
            ["reason"], registry=r,
        )
        self.target_refused = Counter(
            "continuity_router_target_refused", "TCP connects to a frontend that were refused or timed out",
            ["target"], registry=r,
        )
        self.websockets_live = Gauge(
            "continuity_router_websockets_live", "WebSocket byte pipes currently open", registry=r
        )
        self.websockets_total = Counter(
            "continuity_router_websockets", "WebSocket byte pipes opened", registry=r
        )
        self.forwarded = Counter(
            "continuity_router_forwarded", "HTTP requests forwarded, by response status class",
            ["status"], registry=r,
        )
        self.pool_idle = Gauge(
            "continuity_router_pool_idle", "Idle pooled keep-alive connections to frontends", registry=r
        )
        self.pool_opened = Counter(
            "continuity_router_pool_opened", "Keep-alive connections opened to frontends", registry=r
        )
        self.pool_reused = Counter(
            "continuity_router_pool_reused", "Forwarded requests that reused a pooled connection",
            registry=r,
        )
        self.pool_stale = Counter(
            "continuity_router_pool_stale",
            "Pooled connections found closed by the frontend and retried on a fresh one", registry=r,
        )
        self.header_timeouts = Counter(
            "continuity_router_header_timeouts", "Client connections closed for slow request headers",
            registry=r,
        )
        self.protocol_errors = Counter(
            "continuity_router_protocol_errors", "Malformed HTTP from clients or frontends, by side",
            ["side"], registry=r,
        )
        self.cluster_members = Gauge(
            "continuity_router_cluster_frontends", "Frontends in the map, by state (active|draining|dead)",
            ["state"], registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics for one frontend, on a registry of its own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from kernel.metrics import LATENCY_BUCKETS, new_registry

CONTENT_TYPE = CONTENT_TYPE_LATEST


class HotCounter:
    """A counter bumped once or more per publish: a plain float, exported when scraped.

    prometheus_client's Counter takes a lock per ``inc``; the frontend updates its metrics from
    its one trio thread (the store's worker threads never touch them), so the lock only costs:
    with the two histograms below, 7 locked updates were ~10% of a max-rate publish's CPU."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.value = name, documentation, 0.0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


class HotHistogram:
    """A Histogram (same buckets, same exposition) for the per-publish latencies; see HotCounter."""

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self._upper = [*buckets, float("inf")]
        self._counts = [0] * len(self._upper)  # per bucket, not cumulative
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._upper, amount)] += 1
        self._sum += amount

    def collect(self) -> Iterator[Metric]:
        cumulative, acc = [], 0
        for upper, n in zip(self._upper, self._counts, strict=True):
            acc += n
            cumulative.append((floatToGoString(upper), acc))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self._sum)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = new_registry()
        self.publish_ack_seconds = HotHistogram(
            "continuity_publish_ack_seconds",
            "From a publish's arrival to its ACK or NACK being queued to the publisher",
            LATENCY_BUCKETS, r,
        )
        self.publish_deliver_seconds = HotHistogram(
            "continuity_publish_deliver_seconds",
            "From a message's numbering at its channel home to its fan-out to this node's subscribers",
            LATENCY_BUCKETS, r,
        )
        self.resume_catch_up_seconds = Histogram(
            "continuity_resume_catch_up_seconds",
            "From a resume's CONNECTED to the replay of a channel's missed messages being queued",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.connections_live = Gauge(
            "continuity_connections_live", "Connections with a live transport", registry=r
        )
        self.connections_detached = Gauge(
            "continuity_connections_detached",
            "Connections kept without a transport, awaiting resume",
            registry=r,
        )
        self.resumes = Counter("continuity_resumes", "Resume and recover attempts", ["result"], registry=r)
        self.expired = Counter(
            "continuity_connections_expired", "Detached connections expired by TTL", registry=r
        )
        self.messages_in = HotCounter("continuity_messages_in", "Messages received from publishers", r)
        self.messages_out = HotCounter("continuity_messages_out", "Messages delivered to subscribers", r)
        self.frames_in = HotCounter("continuity_frames_in", "ProtocolMessages received", r)
        self.presence_in = Counter(
            "continuity_presence_in", "Presence events received from clients", registry=r
        )
        self.presence_syncs = Counter(
            "continuity_presence_syncs", "Presence sets sent as SYNC on attach", registry=r
        )
        self.presence_server_events = Counter(
            "continuity_presence_server_events",
            "Presence events published on a connection's behalf (linger, CLOSE, DETACH, re-entry)",
            ["action"],
            registry=r,
        )
        self.replays = Counter("continuity_replays", "Attaches resumed with a replay", registry=r)
        self.replayed_messages = Counter(
            "continuity_replayed_messages", "Messages sent by replay", registry=r
        )
        self.discontinuities = Counter(
            "continuity_discontinuities", "Attaches answered with 90003 (continuity lost)", registry=r
        )
        self.duplicates_suppressed = Counter(
            "continuity_fanout_duplicates_suppressed",
            "Fan-out deliveries skipped because the subscriber already had the entry",
            registry=r,
        )
        self.duplicates = Counter(
            "continuity_duplicate_publishes", "Re-sent publishes answered from the log", registry=r
        )
        self.nacks = Counter("continuity_nacks", "NACKs sent, by error code", ["code"], registry=r)
        self.errors_sent = Counter("continuity_errors", "ERROR messages sent, by code", ["code"], registry=r)
        self.auth_failures = Counter(
            "continuity_auth_failures", "Refused credentials, by code", ["code"], registry=r
        )
        self.protocol_errors = Counter(
            "continuity_protocol_errors",
            "Malformed frames or requests, by transport",
            ["transport"],
            registry=r,
        )
        self.takeovers = Counter(
            "continuity_takeovers", "Connections taken over from another owner", registry=r
        )
        self.takeover_failures = Counter(
            "continuity_takeover_failures",
            "Resumes for another owner's connection that found no state",
            registry=r,
        )
        self.peer_links_rejected = Counter(
            "continuity_peer_links_rejected",
            "Peer links dropped for a bad or unauthenticated hello",
            registry=r,
        )
        self.gossip_dropped = Gauge(
            "continuity_gossip_dropped",
            "Gossip packets dropped, by reason (since start)",
            ["reason"],
            registry=r,
        )
        self.slow_consumers = Counter(
            "continuity_slow_consumers", "Transports cut for a full outbox", registry=r
        )
        self.comet_requests = Counter(
            "continuity_comet_requests",
            "Comet requests, by kind (connect|recv|send|close|disconnect|invalid)",
            ["kind"],
            registry=r,
        )
        self.sandbox_requests = Counter(
            "continuity_sandbox_requests",
            "Dev-mode sandbox requests (/apps, /stats), by HTTP status",
            ["status"],
            registry=r,
        )
        self.comet_transports_lost = Counter(
            "continuity_comet_transports_lost",
            "Comet transports lost without a close (no recv for comet_transport_timeout_ms, "
            "/disconnect, bad body)",
            registry=r,
        )
        self.kicked = Counter(
            "continuity_connections_kicked", "Connections ended by an operator (continuity-admin kick)",
            registry=r,
        )
        self.key_reloads = Counter(
            "continuity_key_reloads", "API keys reloaded from the config file (SIGHUP or admin)", registry=r
        )
        self.tokens_revoked = Counter(
            "continuity_tokens_revoked",
            "Token revocation records taken (POST /keys/{keyName}/revokeTokens), before spreading",
            registry=r,
        )
        self.rest_requests = Counter(
            "continuity_rest_requests",
            "REST requests answered, by route and Ably error code (0: success)",
            ["route", "code"],
            registry=r,
        )
        self.retained_messages = Gauge(
            "continuity_retained_messages", "Messages held in channel logs", registry=r
        )
        self.detached_state_bytes = Gauge(
            "continuity_detached_state_bytes",
            "Approximate bytes held by detached connections' state",
            registry=r,
        )

        # Zone quorum (frontend/home_quorum.py, docs/architecture.md "Zone quorum").
        self.replication_degraded = Gauge(
            "continuity_replication_degraded",
            "1 while this frontend's channel copies live inside one zone (a single-zone cluster, or a "
            "lost zone with this side holding the majority of zones)",
            registry=r,
        )
        self.write_available = Gauge(
            "continuity_write_available",
            "1 while this frontend can number publishes: a copy in another zone, or a majority of zones",
            registry=r,
        )
        self.write_available.set(1)
        self.publishes_refused_no_quorum = Counter(
            "continuity_publishes_refused_no_quorum",
            "Publishes refused (NACK 50350) because no copy could be placed and this side holds no "
            "majority of zones",
            registry=r,
        )

        # Persisted channels (frontend/persistence.py).
        self.history_written = Counter(
            "continuity_history_written", "Entries written through to the history store", registry=r
        )
        self.history_write_seconds = Histogram(
            "continuity_history_write_seconds",
            "Time to write one batch through to the history store",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.history_write_queue = Gauge(
            "continuity_history_write_queue",
            "Entries waiting to be written to the history store (grows while the store is down)",
            registry=r,
        )
        self.history_pruned = Counter(
            "continuity_history_pruned",
            "Entries pruned from the history store by retention or size rules",
            registry=r,
        )
        self.history_store_errors = Counter(
            "continuity_history_store_errors",
            "History store operations that failed, by op (write|tail|replay|page|prune)",
            ["op"],
            registry=r,
        )
        self.history_store_replays = Counter(
            "continuity_history_store_replays",
            "Resumes from before the memory window replayed from the history store",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

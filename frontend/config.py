"""FrontendConfig: one frozen dataclass, loaded from a documented TOML file.

Every field below is a top-level TOML key of the same name, except API keys,
which live in ``[keys."<appId>.<keyId>"]`` tables::

    node_id = "fe-a1"
    zone = "a"
    port = 8080
    cluster_secret = "change-me"
    connection_state_ttl_ms = 120000

    [keys."app.main"]
    secret = "long-random-secret"
    capability = { "chat:*" = ["publish", "subscribe"], "*" = ["subscribe"] }
    revocable_tokens = true   # optional: its tokens may be revoked (POST /keys/{name}/revokeTokens)

Environment variables ``CONTINUITY_<FIELD>`` (upper case) override the file for
every field but ``keys`` (lists take a comma-separated value), and command-line
flags override both; ``kernel.config`` loads and type-checks all three, and
``load`` refuses an unsafe config outside dev mode. ``example()`` renders
deploy/frontend.example.toml from the comments above each field.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontend.auth import ApiKey, parse_capability
from frontend.persist_rules import ChannelRule, RuleError, parse_rules, rule_for
from kernel.admin import AdminGate
from kernel.config import (
    DEFAULT_GOSSIP_PROFILE,
    DEV_CLUSTER_SECRET,
    ConfigError,
    admin_problem,
    check_gossip_profile,
    check_name,
    check_range,
    example_toml,
    load_config,
    parse_hostport,
    refuse,
    secret_problem,
    wildcard_problem,
)
from kernel.tls import optional_server_context

__all__ = ["ENV_PREFIX", "ConfigError", "FrontendConfig"]

ENV_PREFIX = "CONTINUITY_"


# Why a clustered frontend's persisted channels need a shared store (docs/architecture.md).
SQLITE_IN_A_CLUSTER = (
    "persisted channels on a clustered frontend (gossip_bind is set) need history_store = "
    '"postgresql://...", one store shared by every frontend: a frontend\'s own SQLite file holds only '
    "what it wrote while it was a channel's home, so after a home moves its history would have holes "
    "and a restarted cluster could not continue a channel's serials from it. SQLite is for a "
    "standalone frontend."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontendConfig:
    # Identity of this node in the cluster; goes into every connection key. [A-Za-z0-9_-]{1,32}
    node_id: str = "fe1"
    # Availability zone; replicas are placed in another zone. [A-Za-z0-9_-]{1,32}
    zone: str = "a"
    # Address the one HTTP/WebSocket port listens on.
    host: str = "127.0.0.1"
    # TCP port; 0 picks a free one (the bound port is logged and written to port_file).
    port: int = 8080
    # If set, the bound port is written to this file once listening (for tests and scripts).
    port_file: str | None = None
    # Admin listener address: the admin surfaces (/cluster, /metrics, /admin/*, and on a router the
    # dashboard) are served there when admin_port is set. Keep it 127.0.0.1 or a pod-internal port.
    admin_host: str = "127.0.0.1"
    # Admin listener port (0 picks one). Unset: the admin surfaces are served on the client port,
    # which is refused outside dev mode unless that port is loopback or admin_token is set.
    admin_port: int | None = None
    # Bearer token every admin request must carry (Authorization: Bearer <token>), on either port.
    # At least 16 bytes outside dev mode; the admin CLI reads it from CONTINUITY_ADMIN_TOKEN.
    admin_token: str | None = None
    # TLS on the client port: PEM certificate chain and private key (both or neither); clients then
    # use wss:// and https:// (ably-js: tls: true). Standalone (direct use) only: routers reach
    # frontends over plain TCP, so in a cluster TLS ends at the router (or a load balancer).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # HMAC secret shared by the cluster; signs connection keys. At least 16 bytes outside dev mode.
    cluster_secret: str = DEV_CLUSTER_SECRET
    # Development mode: any key or token is accepted with full capability. Never in production.
    dev: bool = False
    # In dev mode, whether a key that is neither in [keys] nor a sandbox key (POST /apps) is accepted
    # (with full capability). false: such keys get 40101 as on Ably (make conformance sets it).
    dev_accept_any_key: bool = True
    # How long a disconnected connection's state is kept, in milliseconds (Ably: 120000).
    connection_state_ttl_ms: int = 120_000
    # Outbound silence after which a HEARTBEAT is sent, in milliseconds (Ably: 15000).
    max_idle_interval_ms: int = 15_000
    # Largest accepted message payload (sum of a ProtocolMessage's messages), in bytes.
    max_message_size: int = 65_536
    # Largest accepted inbound frame, in bytes; larger frames get ERROR 40000 and the transport closes.
    max_frame_size: int = 524_288
    # Channels one connection may have attached at once; more gets ERROR 40030 on the channel.
    max_channels_per_connection: int = 200
    # How long the presence members of a connection that went away without CLOSE stay present,
    # in milliseconds (Ably: 15000). A resume within it is invisible to everyone; a resume later
    # (within the connection TTL) re-enters them. CLOSE and DETACH leave at once.
    presence_linger_ms: int = 15_000
    # Members per SYNC frame when a presence set is sent on attach (paged with sync cursors).
    presence_sync_page: int = 1_000
    # Frames queued for one transport before it is cut as a slow consumer (state kept, resumable).
    outbox_limit: int = 4_096
    # Publisher flow control (frontend/outflow.py): when the bytes queued for WebSocket clients and
    # not yet handed to the kernel, over the whole process, reach the high-water mark, connections
    # that publish are no longer read until the backlog is down to the low-water mark, in bytes.
    publish_backlog_high_bytes: int = 4 * 1024 * 1024
    publish_backlog_low_bytes: int = 1024 * 1024
    # Read receipts: each WebSocket client is sent a Ping carrying the byte offset every eighth of
    # this many bytes; a client that answers them (as RFC 6455 requires) is written at most this
    # many bytes past the last offset it confirmed, the rest waits in its queue (and so counts
    # towards the backlog above). Bounds what sits unread in kernel buffers. 0 turns it off.
    consumer_window_bytes: int = 128 * 1024
    # The same bound over the whole process: each client's window is this budget shared by the
    # process's WebSocket clients, between a quarter of ``consumer_window_bytes`` and all of it, so
    # what sits unread (and with it the delay at max rate) does not grow with the number of
    # clients. 0: every client gets the whole ``consumer_window_bytes``.
    consumer_budget_bytes: int = 8 * 1024 * 1024
    # Seconds publishers may stay paused before the transport holding the most unsent bytes (and any
    # that made no progress meanwhile) is cut as a slow consumer (resumable), again every such period.
    slow_consumer_stall_s: float = 2.0
    # Messages each channel log keeps at most; older ones fall out before the time window if exceeded.
    channel_log_max_messages: int = 20_000
    # Comet: how long a transport may go without a pending /recv before it counts as lost (the
    # session is kept for the TTL, as for a dropped WebSocket), in milliseconds. ably-js re-polls at
    # once, so this trips only when the client is gone. Default: maxIdleInterval + 10 s.
    comet_transport_timeout_ms: int = 25_000
    # Seconds a client may take to send its HTTP request headers.
    header_timeout_s: float = 10.0
    # Seconds a WebSocket close handshake may take before the socket is dropped.
    close_timeout_s: float = 2.0
    # Older cluster secrets still accepted while rotating (keys and peer links verify with any).
    old_cluster_secrets: tuple[str, ...] = ()
    # Gossip bind address "host:port" (port 0 picks one). Unset: standalone, no cluster.
    gossip_bind: str | None = None
    # Gossip seeds, "host:port" each; re-contacted until known alive, so start order does not matter.
    seeds: tuple[str, ...] = ()
    # Every zone of the cluster, frontend zones and witness zones (zones with only routers): each is
    # one vote of the zone quorum. A side of the cluster that holds a majority of them goes on
    # publishing when it has no other zone to copy to (docs/architecture.md, "Zone quorum"). Zones
    # seen in gossip are added; list them here so that a frontend restarted inside a partition knows
    # them all. Two frontend zones need a third, witness zone (a router there) to survive a zone loss.
    zones: tuple[str, ...] = ()
    # Gossip timing profile: "local" (fast, tests and one host), "lan" (memberlist's LAN values) or "wan".
    gossip_profile: str = DEFAULT_GOSSIP_PROFILE
    # Peer-link listen address (frontend to frontend); port 0 picks one. Used only in a cluster.
    peer_host: str = "127.0.0.1"
    peer_port: int = 0
    # Host advertised to routers and peers for this node's client port (default: host).
    advertise_host: str | None = None
    # Seconds a SIGTERM drain may take before the process exits anyway.
    drain_timeout_s: float = 10.0
    # Where persisted channels keep their history (docs/architecture.md): "sqlite:<path>" (embedded,
    # this frontend's disk; the default, for a standalone node) or a "postgresql://..." URL (shared
    # by every frontend of a cluster; a clustered frontend with persisted channels must use one).
    # Empty: "sqlite:continuity-<node_id>-history.sqlite3" in the working directory. Opened only
    # when a [channels."<pattern>"] rule persists something.
    history_store: str = ""
    # Seconds between two pruning passes over the history store (retention and size, per rule).
    history_prune_interval_s: float = 60.0
    # Channel rules, [channels."<pattern>"] tables (frontend/persist_rules.py; see the end of the file).
    channels: tuple[ChannelRule, ...] = ()
    # API keys by name ("appId.keyId").
    keys: dict[str, ApiKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("node_id", self.node_id)
        check_name("zone", self.zone)
        for z in self.zones:
            check_name("zones", z)
        check_range("port", self.port, 0, 65535)
        if self.admin_port is not None:
            check_range("admin_port", self.admin_port, 0, 65535)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("tls_cert_file and tls_key_file go together: set both (TLS) or neither")
        if self.gossip_bind is not None and self.tls_cert_file is not None:
            raise ConfigError("tls_cert_file on a clustered frontend: routers reach frontends over plain "
                              "TCP; terminate TLS at the routers (their tls_cert_file) or a load balancer")
        check_range("connection_state_ttl_ms", self.connection_state_ttl_ms, 100, 86_400_000)
        check_range("max_idle_interval_ms", self.max_idle_interval_ms, 100, 600_000)
        check_range("max_message_size", self.max_message_size, 256, 16 * 1024 * 1024)
        check_range("max_frame_size", self.max_frame_size, self.max_message_size, 64 * 1024 * 1024)
        check_range("max_channels_per_connection", self.max_channels_per_connection, 1, 100_000)
        check_range("presence_linger_ms", self.presence_linger_ms, 0, 86_400_000)
        check_range("presence_sync_page", self.presence_sync_page, 1, 100_000)
        check_range("comet_transport_timeout_ms", self.comet_transport_timeout_ms, 100, 600_000)
        check_range("outbox_limit", self.outbox_limit, 16, 10_000_000)
        check_range("publish_backlog_high_bytes", self.publish_backlog_high_bytes, 64 * 1024, 1 << 40)
        check_range(
            "publish_backlog_low_bytes",
            self.publish_backlog_low_bytes,
            0,
            self.publish_backlog_high_bytes - 1,
        )
        check_range("consumer_window_bytes", self.consumer_window_bytes, 0, 1 << 30)
        check_range("consumer_budget_bytes", self.consumer_budget_bytes, 0, 1 << 40)
        if not 0.1 <= self.slow_consumer_stall_s <= 600:
            raise ConfigError(
                f"slow_consumer_stall_s={self.slow_consumer_stall_s} is out of range [0.1, 600]"
            )
        check_range("channel_log_max_messages", self.channel_log_max_messages, 16, 100_000_000)
        if not 0.1 <= self.header_timeout_s <= 600:
            raise ConfigError(f"header_timeout_s={self.header_timeout_s} is out of range [0.1, 600]")
        if not 0.1 <= self.close_timeout_s <= 60:
            raise ConfigError(f"close_timeout_s={self.close_timeout_s} is out of range [0.1, 60]")
        check_gossip_profile(self.gossip_profile)
        check_range("peer_port", self.peer_port, 0, 65535)
        for seed in self.seeds:
            parse_hostport(seed, name="seeds", allow_zero=False)
        if self.gossip_bind is not None:
            parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)
        if not 0.5 <= self.drain_timeout_s <= 600:
            raise ConfigError(f"drain_timeout_s={self.drain_timeout_s} is out of range [0.5, 600]")
        store = self.history_store
        if store and not store.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ConfigError(f"history_store={store!r} must be sqlite:<path> or a postgresql:// URL")
        if self.channels and self.clustered and self.store_url.startswith("sqlite:"):
            raise ConfigError(SQLITE_IN_A_CLUSTER)
        if not 1 <= self.history_prune_interval_s <= 86_400:
            raise ConfigError(
                f"history_prune_interval_s={self.history_prune_interval_s} is out of range [1, 86400]"
            )
        if not self.dev and len(self.cluster_secret.encode()) < 16:
            raise ConfigError("cluster_secret must be at least 16 bytes outside dev mode")

    @property
    def clustered(self) -> bool:
        return self.gossip_bind is not None

    def tls_context(self) -> ssl.SSLContext | None:
        """The client port's TLS context (kernel.tls), or None without TLS; ConfigError if the
        files do not load."""
        return optional_server_context(self.tls_cert_file, self.tls_key_file)

    @property
    def admin_gate(self) -> AdminGate:
        """Where and for whom the admin surfaces are served (``kernel.admin``)."""
        return AdminGate.of(self.admin_host, self.admin_port, self.admin_token)

    @property
    def secrets(self) -> list[str]:
        return [self.cluster_secret, *self.old_cluster_secrets]

    @property
    def retention_ms(self) -> int:
        """How long channel logs keep messages: the TTL plus one idle interval (DESIGN 2)."""
        return self.connection_state_ttl_ms + self.max_idle_interval_ms

    def persist_rule(self, channel: str) -> ChannelRule | None:
        """The rule that persists ``channel``, if any."""
        return rule_for(self.channels, channel) if self.channels else None

    @property
    def store_url(self) -> str:
        return self.history_store or f"sqlite:continuity-{self.node_id}-history.sqlite3"

    def production_problems(self) -> list[str | None]:
        """What makes this config unsafe outside dev mode (None entries are fine), each with its fix."""
        problems = [secret_problem("cluster_secret", self.cluster_secret)]
        problems.append(
            admin_problem(host=self.host, admin_port=self.admin_port, admin_token=self.admin_token)
        )
        if self.admin_token is not None:
            problems.append(secret_problem("admin_token", self.admin_token))
        problems += [secret_problem("old_cluster_secrets", s) for s in self.old_cluster_secrets]
        problems += [secret_problem(f'keys."{k.name}".secret', k.secret) for k in self.keys.values()]
        if self.clustered:
            assert self.gossip_bind is not None
            problems.append(
                wildcard_problem(
                    "gossip_bind",
                    parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)[0],
                    "gossip advertises its bind address; bind this node's own IP (in k8s, the pod IP)",
                )
            )
            advertised = self.advertise_host or self.host
            problems.append(
                wildcard_problem(
                    "advertise_host"
                    if self.advertise_host
                    else "host (advertised, as advertise_host is unset)",
                    advertised,
                    "set advertise_host to this node's own IP (in k8s, the pod IP)",
                )
            )
        return problems

    @classmethod
    def load(
        cls, path: str | Path | None, env: dict[str, str] | None = None, **overrides: Any
    ) -> FrontendConfig:
        """Load ``path`` (if any), apply ``CONTINUITY_*`` env overrides, then ``overrides``; refuse
        an unsafe config outside dev mode (``production_problems``)."""
        config = load_config(
            cls,
            path,
            env_prefix=ENV_PREFIX,
            env=env,
            overrides=overrides,
            tables={"keys": parse_keys, "channels": parse_channel_rules},
        )
        refuse(config.production_problems(), dev=config.dev)
        return config


def parse_channel_rules(raw: Any) -> tuple[ChannelRule, ...]:
    """The ``[channels."<pattern>"]`` tables (frontend/persist_rules.py)."""
    try:
        return parse_rules(raw)
    except RuleError as exc:
        raise ConfigError(str(exc)) from None


def parse_keys(raw: Any) -> dict[str, ApiKey]:
    """The ``[keys."appId.keyId"]`` tables: a secret and an Ably capability each."""
    if not isinstance(raw, dict):
        raise ConfigError('keys: expected a table of API keys, [keys."appId.keyId"]')
    keys: dict[str, ApiKey] = {}
    for name, spec in raw.items():
        if "." not in name:
            raise ConfigError(f"key name {name!r} must look like appId.keyId")
        if not isinstance(spec, dict) or not isinstance(spec.get("secret"), str):
            raise ConfigError(f"keys.{name}.secret: expected a string")
        unknown = sorted(set(spec) - {"secret", "capability", "revocable_tokens"})
        if unknown:
            raise ConfigError(
                f"keys.{name}: unknown keys {', '.join(unknown)} (secret, capability, revocable_tokens)"
            )
        revocable = spec.get("revocable_tokens", False)
        if not isinstance(revocable, bool):
            raise ConfigError(f"keys.{name}.revocable_tokens: expected true or false")
        try:
            cap = parse_capability(spec.get("capability", {"*": ["*"]}))
        except ValueError as exc:
            raise ConfigError(f"keys.{name}.capability: {exc}") from None
        keys[name] = ApiKey(name=name, secret=spec["secret"], capability=cap, revocable_tokens=revocable)
    return keys


EXAMPLE_HEADER = """\
# Continuity frontend configuration: every key, with its default (generated from
# frontend/config.py by `make examples`; a test fails if this file drifts from the code).
# Environment variables CONTINUITY_<KEY> override this file (lists are comma-separated, e.g.
# CONTINUITY_SEEDS=10.0.0.1:7946,10.0.0.2:7946), and command-line flags override both.
# Outside dev mode the daemon refuses built-in, placeholder or short secrets, wildcard advertised
# addresses and admin surfaces on a public port without a token; the message says what to do.
"""

EXAMPLE_TRAILER = """\
# Channel rules: [channels."<pattern>"], the first pattern that matches a channel's name applies
# ("*" matches anything). persist keeps its messages this long beyond the memory window, in
# history_store (s, m, h, d; up to 400d); max_entries bounds how many publishes are kept. Channels
# no rule matches live in memory only.
# channels: no rule, unset by default
# [channels."chat:*"]
# persist = "24h"
# max_entries = 100000

# API keys: [keys."<appId>.<keyId>"] with a secret (at least 16 bytes outside dev mode) and an
# Ably-style capability (default: everything); revocable_tokens = true lets the key revoke the
# tokens it issues (POST /keys/{keyName}/revokeTokens). Replace these example secrets.
[keys."app.main"]
secret = "REPLACE-ME-with-a-long-random-secret"
capability = { "*" = ["*"] }
revocable_tokens = true

[keys."app.readonly"]
secret = "REPLACE-ME-with-another-long-random-secret"
capability = { "chat:*" = ["subscribe"], "news" = ["subscribe"] }
"""


def example() -> str:
    """deploy/frontend.example.toml, generated from the dataclass so that it cannot drift."""
    return example_toml(
        FrontendConfig,
        header=EXAMPLE_HEADER,
        trailer=EXAMPLE_TRAILER,
        skip=("keys", "channels"),
        examples={"cluster_secret": "REPLACE-ME-with-32-random-bytes-of-base64"},
    )

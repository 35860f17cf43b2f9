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

Environment variables ``CONTINUITY_<FIELD>`` (upper case) override the file
for scalar fields, and command-line flags override both.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontend.auth import ApiKey, parse_capability


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and its allowed range."""


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")


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
    # HMAC secret shared by the cluster; signs connection keys. At least 16 bytes outside dev mode.
    cluster_secret: str = "dev-cluster-secret-not-for-production"
    # Development mode: any key or token is accepted with full capability. Never in production.
    dev: bool = False
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
    # Read receipts: each WebSocket client is sent a Ping carrying the byte offset every quarter of
    # this many bytes; a client that answers them (as RFC 6455 requires) is written at most this
    # many bytes past the last offset it confirmed, the rest waits in its queue (and so counts
    # towards the backlog above). Bounds what sits unread in kernel buffers. 0 turns it off.
    consumer_window_bytes: int = 128 * 1024
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
    # Gossip timing profile: "local" (fast, tests and one host), "lan" (memberlist's LAN values) or "wan".
    gossip_profile: str = "local"
    # Peer-link listen address (frontend to frontend); port 0 picks one. Used only in a cluster.
    peer_host: str = "127.0.0.1"
    peer_port: int = 0
    # Host advertised to routers and peers for this node's client port (default: host).
    advertise_host: str | None = None
    # Seconds a SIGTERM drain may take before the process exits anyway.
    drain_timeout_s: float = 10.0
    # API keys by name ("appId.keyId").
    keys: dict[str, ApiKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("node_id", "zone"):
            value = getattr(self, name)
            if not value or len(value) > 32 or not all(c.isalnum() or c in "_-" for c in value):
                raise ConfigError(f"{name}={value!r} must match [A-Za-z0-9_-]{{1,32}}")
        _check_range("port", self.port, 0, 65535)
        _check_range("connection_state_ttl_ms", self.connection_state_ttl_ms, 100, 86_400_000)
        _check_range("max_idle_interval_ms", self.max_idle_interval_ms, 100, 600_000)
        _check_range("max_message_size", self.max_message_size, 256, 16 * 1024 * 1024)
        _check_range("max_frame_size", self.max_frame_size, self.max_message_size, 64 * 1024 * 1024)
        _check_range("max_channels_per_connection", self.max_channels_per_connection, 1, 100_000)
        _check_range("presence_linger_ms", self.presence_linger_ms, 0, 86_400_000)
        _check_range("presence_sync_page", self.presence_sync_page, 1, 100_000)
        _check_range("comet_transport_timeout_ms", self.comet_transport_timeout_ms, 100, 600_000)
        _check_range("outbox_limit", self.outbox_limit, 16, 10_000_000)
        _check_range("publish_backlog_high_bytes", self.publish_backlog_high_bytes, 64 * 1024, 1 << 40)
        _check_range(
            "publish_backlog_low_bytes",
            self.publish_backlog_low_bytes,
            0,
            self.publish_backlog_high_bytes - 1,
        )
        _check_range("consumer_window_bytes", self.consumer_window_bytes, 0, 1 << 30)
        if not 0.1 <= self.slow_consumer_stall_s <= 600:
            raise ConfigError(
                f"slow_consumer_stall_s={self.slow_consumer_stall_s} is out of range [0.1, 600]"
            )
        _check_range("channel_log_max_messages", self.channel_log_max_messages, 16, 100_000_000)
        if not 0.1 <= self.header_timeout_s <= 600:
            raise ConfigError(f"header_timeout_s={self.header_timeout_s} is out of range [0.1, 600]")
        if not 0.1 <= self.close_timeout_s <= 60:
            raise ConfigError(f"close_timeout_s={self.close_timeout_s} is out of range [0.1, 60]")
        if self.gossip_profile not in ("local", "lan", "wan"):
            raise ConfigError(f"gossip_profile={self.gossip_profile!r} must be one of local, lan, wan")
        _check_range("peer_port", self.peer_port, 0, 65535)
        for addr in (*self.seeds, *([self.gossip_bind] if self.gossip_bind else [])):
            host, sep, port = addr.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ConfigError(f"address {addr!r} must be host:port")
        if not 0.5 <= self.drain_timeout_s <= 600:
            raise ConfigError(f"drain_timeout_s={self.drain_timeout_s} is out of range [0.5, 600]")
        if not self.dev and len(self.cluster_secret.encode()) < 16:
            raise ConfigError("cluster_secret must be at least 16 bytes outside dev mode")

    @property
    def clustered(self) -> bool:
        return self.gossip_bind is not None

    @property
    def secrets(self) -> list[str]:
        return [self.cluster_secret, *self.old_cluster_secrets]

    @property
    def retention_ms(self) -> int:
        """How long channel logs keep messages: the TTL plus one idle interval (DESIGN 2)."""
        return self.connection_state_ttl_ms + self.max_idle_interval_ms

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> FrontendConfig:
        raw = dict(raw)
        keys_raw = raw.pop("keys", {}) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        keys: dict[str, ApiKey] = {}
        if not isinstance(keys_raw, dict):
            raise ConfigError("[keys] must be a table of API keys")
        for name, spec in keys_raw.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("secret"), str):
                raise ConfigError(f"keys.{name} needs a string 'secret'")
            try:
                cap = parse_capability(spec.get("capability", {"*": ["*"]}))
            except ValueError as exc:
                raise ConfigError(f"keys.{name}.capability: {exc}") from None
            if "." not in name:
                raise ConfigError(f"key name {name!r} must look like appId.keyId")
            keys[name] = ApiKey(name=name, secret=spec["secret"], capability=cap)
        for name in ("seeds", "old_cluster_secrets"):
            if name in raw:
                if isinstance(raw[name], str):
                    raw[name] = tuple(x.strip() for x in raw[name].split(",") if x.strip())
                elif not isinstance(raw[name], (list, tuple)):
                    raise ConfigError(f"{name} must be a list of strings")
                raw[name] = tuple(str(x) for x in raw[name])
        try:
            return cls(keys=keys, **raw)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def load(
        cls, path: str | Path | None, env: dict[str, str] | None = None, **overrides: Any
    ) -> FrontendConfig:
        """Load ``path`` (if any), apply ``CONTINUITY_*`` env overrides, then ``overrides``."""
        raw: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as fh:
                try:
                    raw = tomllib.load(fh)
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigError(f"{path}: {exc}") from None
        environ: Mapping[str, str] = os.environ if env is None else env
        for f in dataclasses.fields(cls):
            value = environ.get(f"CONTINUITY_{f.name.upper()}")
            if value is None or f.name == "keys":
                continue
            raw[f.name] = _coerce(f.name, value, f.type)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)


def _coerce(name: str, value: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind.startswith("bool"):
            return value.lower() in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except ValueError:
        raise ConfigError(f"CONTINUITY_{name.upper()}={value!r} is not a valid {kind}") from None
    return value

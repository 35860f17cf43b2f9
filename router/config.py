"""RouterConfig: one frozen dataclass, loaded from a documented TOML file.

Every field below is a top-level TOML key of the same name::

    node_id = "rt1"
    zone = "a"
    host = "0.0.0.0"
    port = 8080
    cluster_secret = "long-random-cluster-secret"
    old_cluster_secrets = ["the-previous-secret"]     # still accepted during a rotation
    gossip_bind = "10.0.0.5:7946"
    seeds = ["10.0.0.11:7946", "10.0.0.12:7946"]
    gossip_profile = "lan"

Environment variables ``CONTINUITY_ROUTER_<FIELD>`` (upper case) override the file; list fields
(``seeds``, ``old_cluster_secrets``) take a comma-separated value. Command-line flags override both.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "CONTINUITY_ROUTER_"
GOSSIP_PROFILES = ("local", "lan", "wan")
_LIST_FIELDS = ("seeds", "old_cluster_secrets")
DEMO_SECRET_MIN_BYTES = 32  # HS256 (RFC 7518 3.2); router/demo_auth.py signs with it


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and its allowed range."""


def parse_hostport(text: str, *, name: str, allow_zero: bool) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) → ``(host, port)``; raise ConfigError naming ``name``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"{name}={text!r} must look like host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{name}={text!r}: port is out of range [{low}, 65535]")
    return host, port


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig:
    # Identity of this router in the cluster (its gossip name). [A-Za-z0-9_-]{1,32}
    node_id: str = "rt1"
    # Availability zone this router runs in (shown in the cluster map). [A-Za-z0-9_-]{1,32}
    zone: str = "a"
    # Address the one HTTP/WebSocket port listens on.
    host: str = "127.0.0.1"
    # TCP port, [0, 65535]; 0 picks a free one (the bound port is logged and written to port_file).
    port: int = 8080
    # If set, the bound port is written to this file once listening (for tests and scripts).
    port_file: str | None = None
    # Host other members and operators use to reach this router's port (gossip "client" address);
    # None means ``host``. Set it when ``host`` is a wildcard such as 0.0.0.0.
    advertise_host: str | None = None
    # HMAC secret shared by the cluster: verifies connection keys and authenticates gossip.
    # At least 16 bytes outside dev mode.
    cluster_secret: str = "dev-cluster-secret-not-for-production"
    # Earlier cluster secrets still accepted (keys and gossip) during a rotation; newest first.
    old_cluster_secrets: tuple[str, ...] = ()
    # Development mode: relaxes the secret length check and enables the demo page's tunnel test hook
    # (``POST /dev/tunnel``, router/tunnel.py). Never in production.
    dev: bool = False
    # API key "appId.keyId:secret" the demo page's token endpoint (``GET /demo/token``) signs
    # short-lived JWTs with (capability limited to ``demo:*`` channels). The frontends must have the
    # same key in their ``[keys]``. None: no token endpoint, and /demo/ says so. The secret must be
    # at least 32 bytes outside dev mode.
    demo_key: str | None = None
    # Gossip UDP+TCP bind address, "host:port"; port 0 picks a free one.
    gossip_bind: str = "127.0.0.1:0"
    # Gossip seeds to join through, each "host:port" (usually some frontends).
    seeds: tuple[str, ...] = ()
    # Gossip timing profile: "local" (fast, one machine), "lan" (memberlist LAN) or "wan".
    gossip_profile: str = "lan"
    # Seconds allowed for a TCP connect to a frontend, [0.05, 60]; a timeout counts as a refusal.
    connect_timeout_s: float = 2.0
    # Targets tried per request when connects are refused, [1, 16].
    connect_attempts: int = 3
    # Seconds a refused frontend is skipped by every request before it is tried again, [0, 60].
    refused_memory_s: float = 2.0
    # Seconds a client may take to send its HTTP request headers (against slowloris), [0.1, 600].
    header_timeout_s: float = 10.0
    # Seconds a forwarded request may wait for the frontend's response headers, [1, 3600]
    # (above a Comet long-poll: maxIdleInterval plus margin; Ably's recvTimeout is 90 s).
    upstream_timeout_s: float = 120.0
    # Idle keep-alive connections kept per frontend for forwarded HTTP, [0, 10000]. Connections in
    # use are not capped by this (every parked long-poll holds one).
    pool_max_idle: int = 32
    # Seconds an idle pooled connection is kept before it is closed, [0.1, 3600].
    pool_idle_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("node_id", "zone"):
            value = getattr(self, name)
            if not value or len(value) > 32 or not all(c.isalnum() or c in "_-" for c in value):
                raise ConfigError(f"{name}={value!r} must match [A-Za-z0-9_-]{{1,32}}")
        _check_range("port", self.port, 0, 65535)
        parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)
        for seed in self.seeds:
            parse_hostport(seed, name="seeds", allow_zero=False)
        if self.gossip_profile not in GOSSIP_PROFILES:
            raise ConfigError(f"gossip_profile={self.gossip_profile!r} must be one of {GOSSIP_PROFILES}")
        _check_range("connect_timeout_s", self.connect_timeout_s, 0.05, 60)
        _check_range("connect_attempts", self.connect_attempts, 1, 16)
        _check_range("refused_memory_s", self.refused_memory_s, 0, 60)
        _check_range("header_timeout_s", self.header_timeout_s, 0.1, 600)
        _check_range("upstream_timeout_s", self.upstream_timeout_s, 1, 3600)
        _check_range("pool_max_idle", self.pool_max_idle, 0, 10_000)
        _check_range("pool_idle_timeout_s", self.pool_idle_timeout_s, 0.1, 3600)
        if self.demo_key is not None:
            name, sep, secret = self.demo_key.partition(":")
            if not sep or "." not in name or not secret:
                raise ConfigError("demo_key must look like appId.keyId:secret")
            if not self.dev and len(secret.encode()) < DEMO_SECRET_MIN_BYTES:
                raise ConfigError(
                    f"demo_key's secret must be at least {DEMO_SECRET_MIN_BYTES} bytes outside dev mode")
        named = [("cluster_secret", self.cluster_secret)]
        named += [("old_cluster_secrets", s) for s in self.old_cluster_secrets]
        for name, secret in named:
            if not secret:
                raise ConfigError(f"{name} must not be empty")
            if not self.dev and len(secret.encode()) < 16:
                raise ConfigError(f"{name} must be at least 16 bytes outside dev mode")

    @property
    def secrets(self) -> list[str]:
        """Every accepted cluster secret, the signing one first."""
        return [self.cluster_secret, *self.old_cluster_secrets]

    @property
    def gossip_address(self) -> tuple[str, int]:
        return parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)

    @property
    def seed_addresses(self) -> list[tuple[str, int]]:
        return [parse_hostport(s, name="seeds", allow_zero=False) for s in self.seeds]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> RouterConfig:
        """Build from a TOML-shaped mapping; raise ConfigError on unknown keys or bad values."""
        raw = dict(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        for name in _LIST_FIELDS:
            if name in raw:
                value = raw[name]
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{name} must be a list of strings")
                raw[name] = tuple(value)
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def load(
        cls, path: str | Path | None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> RouterConfig:
        """Load ``path`` (if any), apply ``CONTINUITY_ROUTER_*`` env overrides, then ``overrides``
        (None values are ignored). Raise ConfigError (or OSError if the file cannot be read)."""
        raw: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as fh:
                try:
                    raw = tomllib.load(fh)
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigError(f"{path}: {exc}") from None
        environ: Mapping[str, str] = os.environ if env is None else env
        for f in dataclasses.fields(cls):
            value = environ.get(f"{ENV_PREFIX}{f.name.upper()}")
            if value is not None:
                raw[f.name] = _coerce(f.name, value, f.type)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)


def _coerce(name: str, value: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if name in _LIST_FIELDS:
            return [v.strip() for v in value.split(",") if v.strip()]
        if kind.startswith("bool"):
            return value.lower() in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={value!r} is not a valid {kind}") from None
    return value

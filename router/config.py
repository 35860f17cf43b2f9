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
``kernel.config`` loads and type-checks all three; ``load`` refuses an unsafe config outside dev
mode, and ``example()`` renders deploy/router.example.toml from the comments above each field.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.admin import AdminGate
from kernel.config import (
    DEFAULT_GOSSIP_PROFILE,
    DEV_CLUSTER_SECRET,
    GOSSIP_PROFILES,
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

__all__ = ["ENV_PREFIX", "GOSSIP_PROFILES", "ConfigError", "RouterConfig", "parse_hostport"]

ENV_PREFIX = "CONTINUITY_ROUTER_"
DEMO_SECRET_MIN_BYTES = 32  # HS256 (RFC 7518 3.2); router/demo_auth.py signs with it


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
    # use wss:// and https:// (ably-js: tls: true).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Host other members and operators use to reach this router's port (gossip "client" address);
    # None means ``host``. Set it when ``host`` is a wildcard such as 0.0.0.0.
    advertise_host: str | None = None
    # HMAC secret shared by the cluster: verifies connection keys and authenticates gossip.
    # At least 16 bytes outside dev mode.
    cluster_secret: str = DEV_CLUSTER_SECRET
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
    gossip_profile: str = DEFAULT_GOSSIP_PROFILE
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
        check_name("node_id", self.node_id)
        check_name("zone", self.zone)
        check_range("port", self.port, 0, 65535)
        if self.admin_port is not None:
            check_range("admin_port", self.admin_port, 0, 65535)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("tls_cert_file and tls_key_file go together: set both (TLS) or neither")
        parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)
        for seed in self.seeds:
            parse_hostport(seed, name="seeds", allow_zero=False)
        check_gossip_profile(self.gossip_profile)
        check_range("connect_timeout_s", self.connect_timeout_s, 0.05, 60)
        check_range("connect_attempts", self.connect_attempts, 1, 16)
        check_range("refused_memory_s", self.refused_memory_s, 0, 60)
        check_range("header_timeout_s", self.header_timeout_s, 0.1, 600)
        check_range("upstream_timeout_s", self.upstream_timeout_s, 1, 3600)
        check_range("pool_max_idle", self.pool_max_idle, 0, 10_000)
        check_range("pool_idle_timeout_s", self.pool_idle_timeout_s, 0.1, 3600)
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
        """Every accepted cluster secret, the signing one first."""
        return [self.cluster_secret, *self.old_cluster_secrets]

    @property
    def gossip_address(self) -> tuple[str, int]:
        return parse_hostport(self.gossip_bind, name="gossip_bind", allow_zero=True)

    @property
    def seed_addresses(self) -> list[tuple[str, int]]:
        return [parse_hostport(s, name="seeds", allow_zero=False) for s in self.seeds]

    def production_problems(self) -> list[str | None]:
        """What makes this config unsafe outside dev mode (None entries are fine), each with its fix."""
        problems = [secret_problem("cluster_secret", self.cluster_secret)]
        problems.append(admin_problem(host=self.host, admin_port=self.admin_port,
                                      admin_token=self.admin_token))
        if self.admin_token is not None:
            problems.append(secret_problem("admin_token", self.admin_token))
        problems += [secret_problem("old_cluster_secrets", s) for s in self.old_cluster_secrets]
        if self.demo_key is not None:
            problems.append(secret_problem("demo_key's secret", self.demo_key.partition(":")[2]))
        problems.append(wildcard_problem(
            "gossip_bind", self.gossip_address[0],
            "gossip advertises its bind address; bind this router's own IP (in k8s, the pod IP)"))
        advertised = self.advertise_host or self.host
        problems.append(wildcard_problem(
            "advertise_host" if self.advertise_host else "host (advertised, as advertise_host is unset)",
            advertised, "set advertise_host to this router's own IP (in k8s, the pod IP)"))
        return problems

    @classmethod
    def load(
        cls, path: str | Path | None, env: dict[str, str] | None = None, **overrides: Any
    ) -> RouterConfig:
        """Load ``path`` (if any), apply ``CONTINUITY_ROUTER_*`` env overrides, then ``overrides``
        (None values are ignored); refuse an unsafe config outside dev mode. Raise ConfigError (or
        OSError if the file cannot be read)."""
        config = load_config(cls, path, env_prefix=ENV_PREFIX, env=env, overrides=overrides)
        refuse(config.production_problems(), dev=config.dev)
        return config


EXAMPLE_HEADER = """\
# Continuity router configuration: every key, with its default (generated from router/config.py
# by `make examples`; a test fails if this file drifts from the code).
# Environment variables CONTINUITY_ROUTER_<KEY> override this file (lists are comma-separated),
# and command-line flags override both.
# Outside dev mode the router refuses built-in, placeholder or short secrets, wildcard advertised
# addresses and admin surfaces on a public port without a token; the message says what to do.
"""


def example() -> str:
    """deploy/router.example.toml, generated from the dataclass so that it cannot drift."""
    return example_toml(RouterConfig, header=EXAMPLE_HEADER,
                        examples={"cluster_secret": "REPLACE-ME-with-32-random-bytes-of-base64"})

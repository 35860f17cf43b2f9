"""RouterConfig: defaults, ranges, TOML, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, RouterConfig, parse_hostport

GOOD_SECRET = "a-long-enough-cluster-secret"


def test_defaults_are_valid() -> None:
    cfg = RouterConfig()
    assert cfg.gossip_address == ("127.0.0.1", 0)
    assert cfg.seed_addresses == []
    assert cfg.secrets == [cfg.cluster_secret]


@pytest.mark.parametrize(
    ("text", "allow_zero", "expected"),
    [
        ("127.0.0.1:7946", False, ("127.0.0.1", 7946)),
        ("fe-a1.gossip:1", False, ("fe-a1.gossip", 1)),
        ("[::1]:7946", False, ("::1", 7946)),
        ("0.0.0.0:0", True, ("0.0.0.0", 0)),
    ],
)
def test_parse_hostport(text: str, allow_zero: bool, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, name="x", allow_zero=allow_zero) == expected


@pytest.mark.parametrize(
    ("text", "allow_zero"),
    [
        ("127.0.0.1", True),
        (":80", True),
        ("host:", True),
        ("host:x", True),
        ("host:65536", True),
        ("host:0", False),
        ("host:-1", True),
    ],
)
def test_parse_hostport_rejects(text: str, allow_zero: bool) -> None:
    with pytest.raises(ConfigError, match="x="):
        parse_hostport(text, name="x", allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_id", ""),
        ("node_id", "has.dot"),
        ("zone", "x" * 33),
        ("port", -1),
        ("port", 65536),
        ("gossip_bind", "nope"),
        ("seeds", ("h:0",)),
        ("gossip_profile", "fast"),
        ("connect_timeout_s", 0.0),
        ("connect_timeout_s", 61.0),
        ("connect_attempts", 0),
        ("connect_attempts", 17),
        ("refused_memory_s", -0.1),
        ("header_timeout_s", 0.01),
        ("upstream_timeout_s", 0.5),
        ("pool_max_idle", -1),
        ("pool_idle_timeout_s", 0.0),
        ("cluster_secret", "short"),
        ("old_cluster_secrets", ("short",)),
        ("cluster_secret", ""),
    ],
)
def test_out_of_range(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        RouterConfig(**{"cluster_secret": GOOD_SECRET, field: value})  # type: ignore[arg-type]


def test_dev_allows_a_short_secret() -> None:
    assert RouterConfig(cluster_secret="dev", dev=True).secrets == ["dev"]


def test_load_toml_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        'node_id = "rt9"\nzone = "b"\nport = 0\n'
        f'cluster_secret = "{GOOD_SECRET}"\nold_cluster_secrets = ["{GOOD_SECRET}-old"]\n'
        'seeds = ["127.0.0.1:7001", "127.0.0.1:7002"]\ngossip_profile = "local"\n'
    )
    env = {
        "CONTINUITY_ROUTER_CONNECT_TIMEOUT_S": "0.5",
        "CONTINUITY_ROUTER_POOL_MAX_IDLE": "4",
        "CONTINUITY_ROUTER_DEV": "yes",
        "CONTINUITY_ROUTER_SEEDS": "10.0.0.1:7946, 10.0.0.2:7946",
        "CONTINUITY_NODE_ID": "ignored-frontend-variable",
    }
    cfg = RouterConfig.load(path, env=env, zone="c", host=None)
    assert (cfg.node_id, cfg.zone, cfg.port, cfg.gossip_profile) == ("rt9", "c", 0, "local")
    assert cfg.connect_timeout_s == 0.5 and cfg.pool_max_idle == 4 and cfg.dev
    assert cfg.seed_addresses == [("10.0.0.1", 7946), ("10.0.0.2", 7946)]
    assert cfg.secrets == [GOOD_SECRET, f"{GOOD_SECRET}-old"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("bogus = 1\n", "unknown config keys: bogus"),
        ('seeds = "127.0.0.1:1"\n', "seeds: expected a list"),
        ("port = [\n", "router.toml"),
        ('port = "eighty"\n', "port"),
    ],
)
def test_load_rejects(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(toml)
    with pytest.raises((ConfigError, TypeError), match=message):
        RouterConfig.load(path, env={})


def test_bad_env_value() -> None:
    with pytest.raises(ConfigError, match="CONTINUITY_ROUTER_PORT"):
        RouterConfig.load(None, env={"CONTINUITY_ROUTER_PORT": "eighty"})

"""Channel rules and the history store URL in FrontendConfig."""

import pytest

from frontend.config import ConfigError, FrontendConfig
from frontend.persist_rules import ChannelRule, parse_duration, parse_rules, rule_for


def config(**fields: object) -> FrontendConfig:
    return FrontendConfig.load(None, env={}, dev=True, **fields)


def test_first_matching_rule_applies_in_file_order():
    rules = parse_rules({"chat:vip:*": {"persist": "7d"}, "chat:*": {"persist": "24h", "max_entries": 5}})
    assert rule_for(rules, "chat:vip:1") == ChannelRule("chat:vip:*", 7 * 86_400_000)
    assert rule_for(rules, "chat:lobby") == ChannelRule("chat:*", 86_400_000, 5)
    assert rule_for(rules, "news") is None
    assert rule_for(parse_rules({"room[1]": {"persist": "1h"}}), "room[1]") is not None  # no glob classes


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"x": {"persist": 5}}, "duration string"),
        ({"x": {"persist": "5 days"}}, "must be a duration"),
        ({"x": {"persist": "500d"}}, "out of range"),
        ({"x": {"persist": "1h", "max_entries": 0}}, "max_entries"),
        ({"x": {"persist": "1h", "keep": 1}}, "unknown keys keep"),
        ({"x": "1h"}, "must be a table"),
    ],
)
def test_bad_rules_name_the_field(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config(channels=raw)


def test_store_url_default_and_validation():
    cfg = config(node_id="fe9", channels={"a:*": {"persist": "90s"}})
    assert cfg.store_url == "sqlite:continuity-fe9-history.sqlite3"
    assert cfg.persist_rule("a:b") is not None and cfg.persist_rule("b") is None
    assert config(history_store="postgresql://h/db").store_url == "postgresql://h/db"
    with pytest.raises(ConfigError, match="history_store"):
        config(history_store="mysql://h/db")
    assert parse_duration("2m", "x") == 120_000


def test_a_clustered_frontend_refuses_sqlite_for_persisted_channels():
    """SQLite is per-node: in a cluster it would hold only what each frontend wrote as a home."""
    rules = {"a:*": {"persist": "1h"}}
    with pytest.raises(ConfigError, match="postgresql"):
        config(gossip_bind="127.0.0.1:0", channels=rules)
    with pytest.raises(ConfigError, match="standalone"):
        config(gossip_bind="127.0.0.1:0", channels=rules, history_store="sqlite:/tmp/h.sqlite3")
    assert config(gossip_bind="127.0.0.1:0", channels=rules, history_store="postgresql://h/db").clustered
    assert config(gossip_bind="127.0.0.1:0").store_url.startswith("sqlite:")  # nothing persisted: fine
    assert not config(channels=rules).clustered  # standalone: SQLite is the default


def test_persist_flags_of_the_frontend_command_line():
    from frontend.__main__ import parse_args, persist_overrides

    argv = ["--dev", "--history-store", "sqlite:/tmp/h.db", "--persist", "chat:*=24h", "--persist", "a=1h"]
    over = persist_overrides(parse_args(argv))
    rules = {"chat:*": {"persist": "24h"}, "a": {"persist": "1h"}}
    assert over == {"history_store": "sqlite:/tmp/h.db", "channels": rules}
    cfg = config(**over)
    assert cfg.persist_rule("chat:x") is not None and cfg.store_url == "sqlite:/tmp/h.db"
    assert persist_overrides(parse_args([])) == {"history_store": None, "channels": None}
    for bad in ("chat", "=1h", "chat:*="):
        with pytest.raises(ConfigError, match="PATTERN=DURATION"):
            persist_overrides(parse_args(["--persist", bad]))

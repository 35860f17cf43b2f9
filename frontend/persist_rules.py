"""Channel rules from the daemons' TOML: which channels are persisted, for how long, how many.

::

    history_store = "sqlite:/var/lib/continuity/history.sqlite3"   # or "postgresql://..."

    [channels."chat:*"]
    persist = "24h"          # keep messages this long beyond the memory window (s, m, h, d)
    max_entries = 100000     # and at most this many publishes (a batch publish counts once)

A channel takes the first rule whose pattern matches its name (``*`` matches any run of
characters, as in capabilities); a channel no rule matches is kept in memory only (the
connection TTL plus one idle interval), as before. Pure.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

MAX_PERSIST_MS = 400 * 86_400_000  # a little over Ably's 365 days
DEFAULT_MAX_ENTRIES = 1_000_000
_DURATION = re.compile(r"^(\d{1,9})(s|m|h|d)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class RuleError(ValueError):
    """A channel rule is malformed; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class ChannelRule:
    pattern: str
    persist_ms: int
    max_entries: int = DEFAULT_MAX_ENTRIES

    def matches(self, channel: str) -> bool:
        return fnmatch.fnmatchcase(channel, self.pattern.replace("[", "[[]"))


def parse_duration(text: str, where: str) -> int:
    m = _DURATION.match(text.strip())
    if m is None:
        raise RuleError(f"{where}={text!r} must be a duration such as 90s, 30m, 24h or 7d")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_rules(raw: Any) -> tuple[ChannelRule, ...]:
    """``[channels."<pattern>"]`` tables, in file order."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RuleError('[channels."<pattern>"] must be tables')
    rules = []
    for pattern, spec in raw.items():
        where = f"channels.{pattern!r}"
        if not isinstance(spec, dict):
            raise RuleError(f"{where} must be a table")
        unknown = set(spec) - {"persist", "max_entries"}
        if unknown:
            raise RuleError(f"{where}: unknown keys {', '.join(sorted(unknown))} (persist, max_entries)")
        persist = spec.get("persist")
        if not isinstance(persist, str):
            raise RuleError(f'{where}.persist must be a duration string such as "24h"')
        persist_ms = parse_duration(persist, f"{where}.persist")
        if not 1000 <= persist_ms <= MAX_PERSIST_MS:
            raise RuleError(f"{where}.persist={persist!r} is out of range [1s, 400d]")
        max_entries = spec.get("max_entries", DEFAULT_MAX_ENTRIES)
        valid = isinstance(max_entries, int) and not isinstance(max_entries, bool)
        if not valid or not 1 <= max_entries <= 10**10:
            raise RuleError(f"{where}.max_entries must be an integer in [1, 10000000000]")
        rules.append(ChannelRule(str(pattern), persist_ms, max_entries))
    return tuple(rules)


def rule_for(rules: tuple[ChannelRule, ...], channel: str) -> ChannelRule | None:
    for rule in rules:
        if rule.matches(channel):
            return rule
    return None

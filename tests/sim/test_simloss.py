"""The judge's one exception: entries a double fault left no copy of (frontend/simloss.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from frontend.channel_log import ChannelLog
from frontend.simloss import CopyLedger
from tests.sim.test_sim import _sim

# Zone b lost with ch1's home (fe-b2), and 125 ms later fe-a2, ch1's only other copy, killed: no
# process held 00000003nectf:58 any longer; c0's retry of it was numbered again in the next epoch
# (000000g0zs9fq:19), after every subscriber had been told of the new epoch (90003).
DOUBLE_FAULT_9112 = [[13770, "zone_loss", "b", 3937], [13895, "kill", "fe-a2", 610]]


async def test_a_double_fault_that_destroys_every_copy_is_judged_apart() -> None:
    code, result = await _sim("--seed", "9112", "--schedule", json.dumps(DOUBLE_FAULT_9112))
    assert code == 0 and result["ok"], result["examples"]
    assert result["beyond_model"] == {"duplicated": 3, "serial_mismatch": 3}, result["beyond_model"]


async def test_either_fault_alone_keeps_a_copy() -> None:
    for fault in DOUBLE_FAULT_9112:
        code, result = await _sim("--seed", "9112", "--schedule", json.dumps([fault]))
        assert code == 0 and result["ok"] and not result["beyond_model"], (fault, result["examples"])


def _log(epoch: str, last_seq: int) -> ChannelLog:
    return ChannelLog("ch1", epoch, max_messages=100, retention_ms=60_000, start_seq=last_seq)


@dataclass
class _Home:
    log: ChannelLog


@dataclass
class _Channels:
    homes: dict[str, _Home] = field(default_factory=dict)
    replicas: dict[str, ChannelLog] = field(default_factory=dict)


@dataclass
class _Node:
    channels: _Channels


def test_entries_are_destroyed_only_when_no_survivor_holds_them() -> None:
    ledger = CopyLedger()
    nodes = {
        "fe-b2": _Node(_Channels(homes={"ch1": _Home(_log("e1", 58))})),
        "fe-a2": _Node(_Channels(replicas={"ch1": _log("e1", 57)})),
        "fe-a1": _Node(_Channels(replicas={"ch1": _log("e0", 90)})),  # an older epoch's copy
    }
    ledger.before_stop(nodes, "fe-b2")
    del nodes["fe-b2"]
    assert ledger.destroyed("ch1", "e1:58")  # only the home had numbered 58
    assert not ledger.destroyed("ch1", "e1:57") and not ledger.destroyed("ch1", "e0:58")
    ledger.before_stop(nodes, "fe-a2")
    del nodes["fe-a2"]
    assert ledger.destroyed("ch1", "e1:1") and ledger.destroyed("ch1", "e1:57")
    assert not ledger.destroyed("ch1", "e1:59") and not ledger.destroyed("ch2", "e1:57")

"""The judge's one exception: entries a double fault left no copy of (frontend/simloss.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from frontend.channel_log import ChannelLog
from frontend.sim import DETECT_MS
from frontend.simloss import CopyLedger
from tests.sim.test_sim import _sim

# Zone b lost with ch1's home (fe-b2), and 125 ms later fe-a2, ch1's only other copy, killed: no
# process held 00000003nectf:58 any longer; c0's retry of it was numbered again in the next epoch
# (000000g0zs9fq:19), after every subscriber had been told of the new epoch (90003).
DOUBLE_FAULT_9112 = [[13770, "zone_loss", "b", 3937], [13895, "kill", "fe-a2", 610]]
# fe-a2, ch1's copy (up to 32), restarted; 1.35 s later, before any map showed it gone, fe-b2,
# ch1's home, killed. fe-b1 took the home from fe-a1's older copy (20) in the same epoch and numbered
# 21-30 again with other messages: two payloads ACKed at one serial, and ACKed entries every copy of
# which died (split_brain and lost on destroyed serials).
DOUBLE_FAULT_7973 = [
    [4001, "restart", "fe-a2", 1574],
    [8138, "restart", "fe-a2", 4272],
    [9490, "kill", "fe-b2", 1383],
]
WINDOW_MS = DETECT_MS[1] + 1_000


async def test_a_double_fault_that_destroys_every_copy_is_judged_apart() -> None:
    code, result = await _sim("--seed", "9112", "--schedule", json.dumps(DOUBLE_FAULT_9112))
    assert code == 0 and result["ok"], result["examples"]
    assert result["beyond_model"] == {"duplicated": 3, "serial_mismatch": 3}, result["beyond_model"]


async def test_a_copy_restarted_then_the_home_killed_is_judged_apart() -> None:
    code, result = await _sim("--seed", "7973", "--schedule", json.dumps(DOUBLE_FAULT_7973))
    assert code == 0 and result["ok"], result["examples"]
    assert set(result["beyond_model"]) == {"split_brain", "lost"}, result["beyond_model"]


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


def _nodes() -> dict[str, _Node]:
    return {
        "fe-b2": _Node(_Channels(homes={"ch1": _Home(_log("e1", 58))})),
        "fe-a2": _Node(_Channels(replicas={"ch1": _log("e1", 57)})),
        "fe-a1": _Node(_Channels(replicas={"ch1": _log("e0", 90)})),  # an older epoch's copy
    }


def _stop(ledger: CopyLedger, nodes: dict[str, _Node], dying: str, now_ms: int) -> None:
    ledger.before_stop(nodes, dying, now_ms)
    del nodes[dying]


def test_a_single_stop_destroys_nothing() -> None:
    ledger, nodes = CopyLedger(window_ms=WINDOW_MS), _nodes()
    _stop(ledger, nodes, "fe-b2", 1_000)  # the home's tail (58) was its alone: not a double fault
    assert not ledger.destroyed("ch1", "e1:58") and not ledger.destroyed("ch1", "e1:57")
    assert not ledger.ranges


def test_two_stops_within_the_window_destroy_what_both_held_and_no_survivor_does() -> None:
    ledger, nodes = CopyLedger(window_ms=WINDOW_MS), _nodes()
    _stop(ledger, nodes, "fe-b2", 1_000)
    _stop(ledger, nodes, "fe-a2", 1_000 + WINDOW_MS)
    assert ledger.destroyed("ch1", "e1:1") and ledger.destroyed("ch1", "e1:57")
    assert not ledger.destroyed("ch1", "e1:58")  # only the home ever held it: a single stop's loss
    assert not ledger.destroyed("ch1", "e0:57") and not ledger.destroyed("ch2", "e1:57")


def test_a_survivor_keeps_the_overlap_below_its_copy() -> None:
    ledger, nodes = CopyLedger(window_ms=WINDOW_MS), _nodes()
    nodes["fe-b1"] = _Node(_Channels(replicas={"ch1": _log("e1", 20)}))
    _stop(ledger, nodes, "fe-a2", 1_000)
    _stop(ledger, nodes, "fe-b2", 2_350)
    assert ledger.ranges == {("ch1", "e1"): [(20, 57)]}
    assert not ledger.destroyed("ch1", "e1:20") and ledger.destroyed("ch1", "e1:21")


def test_two_stops_farther_apart_than_the_window_destroy_nothing() -> None:
    ledger, nodes = CopyLedger(window_ms=WINDOW_MS), _nodes()
    _stop(ledger, nodes, "fe-b2", 1_000)
    _stop(ledger, nodes, "fe-a2", 1_001 + WINDOW_MS)  # the cluster had time to notice and copy again
    assert not ledger.ranges and not ledger.destroyed("ch1", "e1:57")

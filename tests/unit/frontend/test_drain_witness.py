"""A drained frontend releases its zone's place at the witness before it leaves (issue 18).

Chaos seed 666654006: fe-b2 drained while it held zone b's place at the witness (rt-w), which forgot
it when it left; fe-b1 then drained and restarted, and the witness took fe-b1's next request, under
a new boot id, for a holder restart: zone b's data was reported lost, though every home and copy
had been handed over, and zone a started new epochs on every channel (77 discontinuity_within_ttl).
A drain never told the witness it was done: the release waited for the next renewal, after the
process had left. Now the end of a drain asks for no grant any more and asks the witness at once
(``QuorumHomes.leave``); the driver sends it before leaving the map (``WitnessClient.leave``).

Pure: four ChannelServices (test_zone_copies.py's), the drain's steps, and the witness core; a node
asks the witness only when its core pokes its driver (its renewal is not due within the test).
"""

from __future__ import annotations

import random
from typing import Any

from frontend.channels import ChannelService
from frontend.drain import Drain
from frontend.metrics import Metrics
from kernel.quorum import Witness
from tests.unit.frontend.test_zone_copies import WITNESS, four, pub, view4


class DrainingNode:
    """What a drain reads of a frontend: its channel service, no client left."""

    def __init__(self, svc: ChannelService) -> None:
        self.node_id, self.config, self.channels = svc.node_id, svc.config, svc
        self.sessions: dict[str, Any] = {}
        self.outlets: dict[str, Any] = {}

    def cut(self, now_ms: int, s: Any, error: Any) -> None:
        raise AssertionError("no client here")


class World:
    def __init__(self) -> None:
        self.services, self.clock = four()
        self.witness = Witness(started_ms=-1_000_000)
        self.poked: list[str] = []
        self.gone: dict[str, ChannelService] = {}
        self.zone = {n: s.config.zone for n, s in self.services.items()}
        for name, svc in self.services.items():
            svc.witness_poke = lambda name=name: self.poked.append(name)

    def ask(self, name: str) -> bool:
        """``name``'s driver asks the witness what its core says; whether it was told of a loss."""
        svc = self.services[name]
        now = self.clock[0]
        req = svc.witness_request(now)
        if req is None:
            return False
        _, need, holding, alone = req
        granted, holder, lost = self.witness.ask(
            now, name, self.zone[name], need=need, holding=holding, alone=alone, boot=svc.boot,
            alive=lambda n: n in self.services,
        )
        svc.grant(now, WITNESS[0], now, granted, need, holder, lost=lost)
        return lost

    def answer_pokes(self) -> None:
        while self.poked:
            self.ask(self.poked.pop(0))

    def drain(self, name: str) -> None:
        finished: list[bool] = []
        drain = Drain(DrainingNode(self.services[name]), self.clock[0], propagate_ms=0,
                      finished=lambda: finished.append(True))  # fmt: skip
        drain.step(self.clock[0])
        assert finished, drain.phase
        self.answer_pokes()  # the driver's last word to the witness, before it leaves the map
        self.gone[name] = self.services.pop(name)
        self.witness.forget([name], lambda n: n in self.services, self.clock[0])  # gossip: left


def zone_b_alone_then_fe_b2_drained() -> tuple[World, dict[str, ChannelService]]:
    """Zone a lost, zone b ACKs with copies inside itself; fe-b2 drains (zone a still out of sight):
    its copy stays in zone b (at fe-b1's home), so it keeps zone b's place until it leaves, and
    fe-b1 holds the place on. Then zone a is back in sight."""
    w = World()
    zone_a = {n: w.services.pop(n) for n in ("fe-a1", "fe-a2")}
    view4(w.services, 0, dead=tuple(zone_a))  # zone a is lost: zone b goes on with the witness's grant
    assert not w.ask("fe-b1") and not w.ask("fe-b2")
    assert w.witness.holder_zone() == "b"
    home = w.services["fe-b1"]
    channel = next(f"ch{i}" for i in range(400) if home.home_of(f"ch{i}") == "fe-b1")
    acked: list[Any] = []
    home.publish(0, pub(channel, 0), lambda serials, err: acked.append(err))
    assert acked == [None]  # ACKed on fe-b2's copy, inside zone b
    assert w.services["fe-b2"].replicas[channel].zone_only
    w.answer_pokes()
    w.clock[0] = 1_000
    w.drain("fe-b2")
    view4(w.services, w.clock[0], dead=(*zone_a, "fe-b2"))
    w.answer_pokes()
    w.clock[0] = 2_000
    w.services.update(zone_a)
    view4(w.services, w.clock[0], dead=("fe-b2",))
    w.answer_pokes()
    return w, zone_a


def restart(w: World, name: str) -> ChannelService:
    old = w.services.get(name) or w.gone[name]
    svc = ChannelService(
        name, old.config, rng=random.Random(name + " again"), metrics=Metrics(),
        fan_out=lambda *a: None, lost=lambda *a: None, local_interest=lambda ch: True,
    )
    svc.bus = old.bus
    w.services[name] = svc
    view4(w.services, w.clock[0], dead=("fe-b2",))
    assert svc.boot != old.boot
    return svc


def test_a_zone_drained_and_restarted_after_handing_everything_over_is_not_reported_lost() -> None:
    w, _ = zone_b_alone_then_fe_b2_drained()
    # fe-b1 drains: its home goes to zone a, and nothing lives in zone b alone.
    w.drain("fe-b1")
    assert "b" not in {h.zone for h in w.witness.holders.values()}
    assert w.witness.lost_zone is None, "zone b's drained holders were taken for restarts"
    # fe-b1 comes back as a new process: a graceful handover is no loss.
    w.clock[0] = 3_000
    restart(w, "fe-b1")
    assert not w.ask("fe-b1"), "the witness took a drained node's restart for the loss of its zone's data"
    for name in ("fe-a1", "fe-a2"):
        assert not w.ask(name)


def test_the_last_holder_killed_after_a_drain_is_still_a_loss() -> None:
    w, _ = zone_b_alone_then_fe_b2_drained()
    # fe-b1 is killed (kill -9) with its degraded home: the entries only zone b held are gone.
    w.gone["fe-b1"] = w.services.pop("fe-b1")
    w.clock[0] = 3_000
    restart(w, "fe-b1")
    assert w.ask("fe-b1")
    assert w.witness.lost_zone == "b"

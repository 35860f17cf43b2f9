"""The simulation's witness router (``frontend/sim.py``): one ``kernel.quorum.Witness`` in zone w.

A node's driver (``frontend/witness_client.py`` in a real process) asks it for a grant when the
node's core says so (``ChannelService.witness_request``); here the request and the answer each take
a client-like latency and are lost when a partition separates the node from the witness. The
witness sees a node alive when the node's process runs and it can reach it. Pure, deterministic:
the World's seeded RNG draws the latencies.
"""

from __future__ import annotations

from typing import Protocol

from frontend.simworld import SimWorld
from kernel.quorum import Witness

WITNESS, WITNESS_ZONE = "r-w", "w"  # the witness router of the zone quorum (kernel/quorum.py)


class WitnessWorld(SimWorld, Protocol):
    """The world with a witness router in it."""

    @property
    def witness(self) -> Witness: ...


def ask_witness(world: WitnessWorld, node_id: str) -> None:
    """Send ``node_id``'s request, if its core has one, and deliver the answer back to the core."""
    node = world.nodes.get(node_id)
    if node is None:
        return
    node.channels.now_ms = world.sched.now
    ask = node.channels.witness_request(world.sched.now)
    if ask is None or not world.reachable(node_id, WITNESS):
        return
    _, need, holding, alone = ask
    sent = world.sched.now
    lat = world.rng.randint(*world.client_latency_ms)

    def sees(other: str) -> bool:
        return other in world.nodes and world.reachable(WITNESS, other)

    def at_witness() -> None:
        if not world.reachable(node_id, WITNESS):
            return
        answer = world.witness.ask(world.sched.now, node_id, world.zone[node_id], need=need, holding=holding,
                                   alone=alone, boot=node.channels.boot, alive=sees)  # fmt: skip
        age = world.witness.lost_age_ms(world.sched.now) + lat  # its age when the answer lands
        world.sched.at(world.sched.now + lat, lambda: answered(*answer, age))

    def answered(granted: bool, holder: str | None, lost: bool, age: int) -> None:
        if world.nodes.get(node_id) is node and world.reachable(node_id, WITNESS):
            world.input(node_id, lambda: node.channels.grant(world.sched.now, WITNESS, sent, granted, need,
                                                             holder, lost=lost, lost_age_ms=age))  # fmt: skip

    world.sched.at(world.sched.now + lat, at_witness)

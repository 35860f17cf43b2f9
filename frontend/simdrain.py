"""The drain of one frontend in the simulation: the driver of ``frontend/drain.py`` on virtual time.

The node is marked draining (its own map at once, the others' after their delay); then the same
``Drain`` that ``Cluster.drain`` runs hands its homes over, cuts its clients and leaves copies of
what remains, stepped as an input of the node at its deadlines (and every ``POLL_MS``, for the homes
and sessions going away); when it has finished, it releases its zone's witness place (with a
witness) and the process exits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from frontend.drain import Drain, Phase
from frontend.simworld import SimWorld
from kernel.placement import ClusterView

POLL_MS = 100  # the simulation has no change notification: it looks again this often
PROPAGATE_MS = 1_000


class DrainWorld(SimWorld, Protocol):
    """The world's maps, and how a node leaves it."""

    @property
    def draining(self) -> set[str]: ...

    @property
    def views(self) -> dict[str, ClusterView]: ...

    def _truth(self, observer: str) -> ClusterView: ...

    def _apply_view(self, node_id: str) -> None: ...

    def _changed(self) -> None: ...

    def _stop(self, node_id: str) -> None: ...


def drain(world: DrainWorld, node_id: str, last_word: Callable[[Any, str], None] | None = None) -> None:
    """``last_word``: the driver's release to the witness once the drain is done (``ask_witness``,
    as ``WitnessClient.leave``); the process leaves once its answer could have come (issue 18)."""
    node = world.nodes[node_id]
    world.draining.add(node_id)
    node.presence.draining = True
    world.views[node_id] = world._truth(node_id)
    world._apply_view(node_id)
    world._changed()
    started: list[Drain] = []

    def poll() -> None:
        if world.nodes.get(node_id) is not node:
            return
        d = started[0]
        world.input(node_id, lambda: d.step(world.sched.now))
        schedule(d)

    def schedule(d: Drain) -> None:
        """Look again at the drain's deadline or after POLL_MS; in COPIES the replies move it on."""
        if d.phase in (Phase.COPIES, Phase.DONE):
            return
        due = d.next_deadline()
        later = world.sched.now + POLL_MS
        world.sched.at(later if due is None else min(due, later), poll)

    def finished() -> None:
        if last_word is None:
            world._stop(node_id)
            return
        last_word(world, node_id)
        world.sched.at(world.sched.now + 2 * world.client_latency_ms[1] + 1, lambda: world._stop(node_id))

    def start() -> None:
        d = Drain(node, world.sched.now, propagate_ms=PROPAGATE_MS, finished=finished)
        started.append(d)
        schedule(d)

    world.input(node_id, start)

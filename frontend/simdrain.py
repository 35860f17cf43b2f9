"""The drain of one frontend in the simulation: ``Cluster.drain``'s steps on virtual time.

1. The node is marked draining (its own map at once, the others' after their delay) and asks each
   channel's next home to take it (``Take``); it waits until it holds no home (or the deadline).
2. It waits for "draining" to reach the routers, then cuts its live clients with a resumable
   DISCONNECTED; their new owners take the state over; it waits until they have (or the deadline).
3. Whatever sessions remain leave an acknowledged copy on another frontend (``SessionPut``).
4. It leaves: the process exits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frontend import peerops as O
from kernel.errors import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from frontend.sim import World

POLL_MS = 100
PROPAGATE_MS = 1_000


def drain(world: World, node_id: str) -> None:
    node = world.nodes[node_id]
    deadline = world.sched.now + int(node.config.drain_timeout_s * 1000)
    world.draining.add(node_id)
    node.presence.draining = True
    world.views[node_id] = world._truth(node_id)
    world._apply_view(node_id)
    world._changed()

    def alive() -> bool:
        return world.nodes.get(node_id) is node

    def wait(done: Callable[[], bool], then: Callable[[], None]) -> None:
        if not alive():
            return
        if done() or world.sched.now >= deadline:
            then()
        else:
            world.sched.at(world.sched.now + POLL_MS, lambda: wait(done, then))

    def take_homes() -> None:
        bus = node.channels.bus
        assert bus is not None
        for name in sorted(node.channels.homes):
            target = node.channels.placement.channel_home(name)
            if target is not None and target != node_id:
                bus.push(target, O.Take(channel=name))
        wait(lambda: not node.channels.homes, lambda: world.sched.at(world.sched.now + PROPAGATE_MS, cut))

    def cut() -> None:
        if not alive():
            return
        live = set(node.outlets)
        error = ErrorInfo.of(ErrorCode.DISCONNECTED, "server is draining; resume to continue")
        for conn_id in sorted(live):
            world.input(node_id, functools.partial(node.cut, world.sched.now, node.sessions[conn_id], error))
        wait(lambda: not live & set(node.sessions), leave_copies)

    def leave_copies() -> None:
        view = node.channels.view
        remaining = [s for s in node.sessions.values() if not s.terminal]
        left = {"n": len(remaining)}
        for s in remaining:
            candidates = [s.secondary] + [p.node_id for p in view.frontends() if p.zone != node.config.zone]
            candidates += [p.node_id for p in view.frontends() if p.zone == node.config.zone]
            order = [c for c in dict.fromkeys(candidates) if c and c != node_id and view.alive(c)]
            put(s.to_wire(), order, left)
        if not remaining:
            world._stop(node_id)

    def put(state: dict[str, Any], order: list[str], left: dict[str, int]) -> None:
        def answered(ok: bool, res: Any) -> None:
            if ok or len(order) <= 1:
                left["n"] -= 1
                if left["n"] == 0:
                    world._stop(node_id)
            else:
                put(state, order[1:], left)

        if not order:
            answered(True, None)
            return
        bus = node.channels.bus
        assert bus is not None
        bus.request(order[0], O.SessionPut(state=state), answered, 2.0)

    world.input(node_id, take_homes)

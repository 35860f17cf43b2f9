"""The router's cluster map: a ClusterView rebuilt from gossip on every membership event.

``ClusterMap`` is what the front door reads (``.view``); ``follow(member)`` keeps it current from a
running gossip member. Tests may set ``.view`` directly and never run gossip.
"""

from __future__ import annotations

import structlog
import trio

import gossip
from kernel.membership import view_from_members
from kernel.placement import ClusterView
from router.metrics import RouterMetrics

log = structlog.get_logger("continuity.router")


class ClusterMap:
    """The current ClusterView, replaced whole on every change (views are immutable)."""

    def __init__(self, view: ClusterView | None = None, metrics: RouterMetrics | None = None) -> None:
        self.view = view if view is not None else ClusterView()
        self.changed = trio.Event()  # set, and replaced, on every update
        self._metrics = metrics

    def set(self, view: ClusterView) -> None:
        self.view = view
        if self._metrics is not None:
            fronts = view.frontends()
            self._metrics.cluster_members.labels(state="active").set(
                sum(1 for p in fronts if p.alive and p.active))
            self._metrics.cluster_members.labels(state="draining").set(
                sum(1 for p in fronts if p.alive and not p.active))
            self._metrics.cluster_members.labels(state="dead").set(sum(1 for p in fronts if not p.alive))
        self.changed.set()
        self.changed = trio.Event()

    async def follow(self, member: gossip.Member) -> None:
        """Rebuild the view from ``member`` now and after every membership event, until cancelled."""
        events = member.events()
        self.set(view_from_members(member.members()))
        async with events:
            async for event in events:
                self.set(view_from_members(member.members()))
                emit = log.debug if event.kind is gossip.EventKind.UPDATED else log.info
                emit("route.map_changed", member=event.member.name, change=str(event.kind),
                     active=len(self.view.active_frontends()))

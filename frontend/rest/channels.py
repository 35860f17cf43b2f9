"""Channel details with occupancy (``GET /channels/{id}``) and the active channels (``GET /channels``).

Occupancy is gathered from every live frontend (peer op ``occupancy``): each counts the
connections it holds attached to the channel, those that may publish and those that
subscribe. A frontend that does not answer within ``GATHER_TIMEOUT_S`` is left out (its
count is missing, never invented). ``GET /channels`` lists the channels homed anywhere in the
cluster (peer op ``channels``), filtered by ``prefix``, up to ``limit``. Presence is not
served, so its metrics are 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from frontend import peerops as O
from kernel.protocol import Flag

if TYPE_CHECKING:
    from frontend.node import FrontendNode

GATHER_TIMEOUT_S = 2.0


def local_occupancy(node: FrontendNode, channel: str) -> dict[str, int]:
    connections = publishers = subscribers = 0
    for s in node.sessions.values():
        cur = s.channels.get(channel)
        if cur is None or s.terminal:
            continue
        connections += 1
        publishers += 1 if cur.modes & Flag.PUBLISH else 0
        subscribers += 1 if cur.modes & Flag.SUBSCRIBE else 0
    return {"connections": connections, "publishers": publishers, "subscribers": subscribers}


def channel_details(channel: str, counts: dict[str, int]) -> dict[str, Any]:
    metrics = {
        "connections": counts.get("connections", 0),
        "publishers": counts.get("publishers", 0),
        "subscribers": counts.get("subscribers", 0),
        "presenceConnections": 0,
        "presenceMembers": 0,
        "presenceSubscribers": 0,
    }
    return {
        "channelId": channel,
        "name": channel,
        "status": {"isActive": metrics["connections"] > 0, "occupancy": {"metrics": metrics}},
    }


class ChannelDirectory:
    """Answers channel details and listings by asking every live frontend."""

    def __init__(self, node: FrontendNode) -> None:
        self.node = node
        node.peer_ops["occupancy"] = self._serve_occupancy
        node.peer_ops["channels"] = self._serve_channels

    def _serve_occupancy(
        self, now_ms: int, src: str, args: dict[str, Any], reply: Callable[[bool, Any], None]
    ) -> None:
        reply(True, local_occupancy(self.node, str(args.get("channel"))))

    def _serve_channels(
        self, now_ms: int, src: str, args: dict[str, Any], reply: Callable[[bool, Any], None]
    ) -> None:
        reply(True, sorted(self.node.channels.homes))

    async def _gather(self, op: str, args: dict[str, Any], local: Any) -> list[Any]:
        """``local`` plus every live peer's answer to ``op`` within the timeout."""
        node = self.node
        answers: list[Any] = [local]
        bus = node.channels.bus
        peers = [p.node_id for p in node.channels.view.frontends() if p.alive and p.node_id != node.node_id]
        if bus is None or not peers:
            return answers
        waiting = len(peers)
        event = trio.Event()

        def on_reply(ok: bool, res: Any) -> None:
            nonlocal waiting
            waiting -= 1
            if ok:
                answers.append(res)
            if waiting == 0:
                event.set()

        for peer in peers:
            bus.request(peer, O.RestCall(kind=op, args=args), on_reply, GATHER_TIMEOUT_S)
        with trio.move_on_after(GATHER_TIMEOUT_S + 0.5):
            await event.wait()
        return answers

    async def details(self, channel: str) -> dict[str, Any]:
        answers = await self._gather("occupancy", {"channel": channel}, local_occupancy(self.node, channel))
        total = {"connections": 0, "publishers": 0, "subscribers": 0}
        for a in answers:
            if isinstance(a, dict):
                for k in total:
                    v = a.get(k)
                    total[k] += v if isinstance(v, int) else 0
        return channel_details(channel, total)

    async def names(self, prefix: str, limit: int) -> list[str]:
        answers = await self._gather("channels", {}, sorted(self.node.channels.homes))
        found = {n for a in answers if isinstance(a, list) for n in a if isinstance(n, str)}
        return sorted(n for n in found if n.startswith(prefix))[:limit]

"""The clustered frontend's map (``Cluster.view``): with ``lan``, a zone gossip has suspected whole for
the hold is dead to placement and the quorum before gossip declares it so; with ``local``, not."""

from __future__ import annotations

import random
from types import SimpleNamespace

import trio

from frontend.cluster import ZONE_SILENCE_S, Cluster
from frontend.config import FrontendConfig
from frontend.node import FrontendNode
from gossip import MemberInfo, MemberState, Metadata


def member(name: str, zone: str, state: MemberState, since: float) -> MemberInfo:
    meta = Metadata(role="frontend", zone=zone, addresses={"client": "h:1", "peer": "h:2"})
    return MemberInfo(name=name, address=("h", 1), incarnation=1, state=state, metadata=meta, since=since)


def cluster(profile: str, members: list[MemberInfo]) -> Cluster:
    cfg = FrontendConfig(node_id="fe-a1", zone="a", dev=True, gossip_profile=profile)
    c = Cluster(FrontendNode(cfg, rng=random.Random(1)))
    c.member = SimpleNamespace(members=lambda: members, config=SimpleNamespace(gossip_to_dead_time=30.0))  # type: ignore[assignment]
    return c


async def test_a_zone_suspected_whole_for_the_hold_is_dead_to_the_map() -> None:
    with trio.fail_after(5):
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        hold = ZONE_SILENCE_S["lan"]
        members = [
            member("fe-a1", "a", MemberState.ALIVE, 0.0),
            member("fe-a2", "a", MemberState.ALIVE, 0.0),
            member("fe-b1", "b", MemberState.SUSPECT, now - hold - 1),
            member("fe-b2", "b", MemberState.SUSPECT, now - hold - 0.5),
        ]
        view = cluster("lan", members).view()
        assert not view.alive("fe-b1") and not view.alive("fe-b2") and view.alive("fe-a2")
        assert cluster("local", members).view().alive("fe-b1")  # local: deaths only
        members[3] = member("fe-b2", "b", MemberState.SUSPECT, now - 1.0)  # not for the hold yet
        assert cluster("lan", members).view().alive("fe-b1")

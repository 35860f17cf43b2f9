"""ChannelService across three in-memory frontends: copies, homes and streams across failures.

Pure: the services talk through a synchronous in-memory bus, time is a number.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from frontend.channel_log import rewind_cursor
from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.peerops import Publish, Refusal, Refused, ReplicaSync
from kernel.placement import ClusterView, Peer

TTL_MS = 10_000
IDLE_MS = 1_000
NODES = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))


class MemoryBus:
    def __init__(self, cluster: dict[str, ChannelService], me: str, now: Callable[[], int]) -> None:
        self.cluster, self.me, self.now = cluster, me, now

    def request(self, peer: str, op: Any, on_reply: Any, timeout_s: float = 3.0) -> None:
        target = self.cluster.get(peer)
        if target is None:
            on_reply(False, Refused(Refusal.UNSENT, "no link to " + peer))
            return
        target.handle_request(self.now(), self.me, op, on_reply)

    def push(self, peer: str, op: Any) -> bool:
        target = self.cluster.get(peer)
        if target is not None:
            target.handle_push(self.now(), self.me, op)
        return target is not None


def cluster() -> tuple[dict[str, ChannelService], list[int]]:
    clock = [0]
    services: dict[str, ChannelService] = {}
    for node, zone in NODES:
        cfg = FrontendConfig(
            dev=True, zone=zone, connection_state_ttl_ms=TTL_MS, max_idle_interval_ms=IDLE_MS
        )
        svc = ChannelService(
            node,
            cfg,
            rng=random.Random(node),
            metrics=Metrics(),
            fan_out=lambda *a: None,
            lost=lambda *a: None,
            local_interest=lambda ch: True,  # every node has a subscriber: nothing retires on its own
        )
        svc.bus = MemoryBus(services, node, lambda: clock[0])
        services[node] = svc
    view(services, clock[0], dead=())
    return services, clock


def pub(channel: str, msg_serial: int, data: int) -> Publish:
    messages = [{"name": "n", "data": data}]
    return Publish(
        channel=channel, connection_id="conn", msg_serial=msg_serial, messages=messages, envelope={}
    )


def view(services: dict[str, ChannelService], now: int, dead: tuple[str, ...]) -> None:
    v = ClusterView({n: Peer(node_id=n, role="frontend", zone=z, alive=n not in dead) for n, z in NODES})
    for name, svc in services.items():
        if name not in dead:
            svc.set_view(now, v)


def test_an_idle_channels_position_survives_its_homes_loss() -> None:
    # Chaos seed 25705 (chaos:firehose): a channel idle between bursts lost every copy of its
    # position; the next home started a new epoch and its subscribers got 90003 for nothing.
    services, clock = cluster()
    channel = next(f"ch{i}" for i in range(100) if services["fe-a1"].home_of(f"ch{i}") == "fe-a1")
    home = services["fe-a1"]
    acked: list[list[str] | None] = []
    home.publish(0, pub(channel, 0, 1), lambda s, e: acked.append(s))
    assert acked and acked[0] is not None
    epoch = acked[0][0].rpartition(":")[0]
    retention = TTL_MS + IDLE_MS
    while clock[0] < 4 * retention:  # idle for four retention windows: the message expires
        clock[0] += 500
        for svc in services.values():
            svc.tick(clock[0])
    del services["fe-a1"]  # kill -9
    view(services, clock[0], dead=("fe-a1",))
    successor = next(s for s in services.values() if s.home_of(channel) == s.node_id)
    got: list[Any] = []
    successor.attach(clock[0], channel, f"{epoch}:1", got.append)
    assert got and got[0].error is None
    assert got[0].last_serial == f"{epoch}:1"  # the same epoch, at the same position
    assert got[0].replay == []  # continuity kept: nothing to replay, nothing lost


def test_a_dropped_stream_restarts_from_its_subscribers_serials_not_with_90003() -> None:
    # Chaos seed 12313: at a heal, fe-b2's subscribers of chaos:0 were cut (slow consumer) and resumed
    # at 523; the stream had gone with them, and the first attach answer (last 558) restarted it with
    # 90003 for every local subscriber, after a 6 s partition: well inside the TTL.
    services, _ = cluster()
    channel = next(f"ch{i}" for i in range(100) if services["fe-a1"].home_of(f"ch{i}") == "fe-a1")
    acked: list[list[str] | None] = []
    for n in range(5):
        services["fe-a1"].publish(0, pub(channel, n, n), lambda s, e: acked.append(s))
    epoch = acked[0][0].rpartition(":")[0] if acked[0] else ""
    follower = services["fe-b1"]
    fanned: list[tuple[int, int]] = []
    lost: list[str] = []
    follower._fan_out = lambda now, ch, entry, pub: fanned.append((entry.first_seq, entry.last_seq))
    follower._lost = lambda now, ch, last, presence, why: lost.append(last)
    follower.local_serials = lambda ch: [f"{epoch}:1", f"{epoch}:3"]  # two subscribers came back
    assert channel not in follower.streams
    got: list[Any] = []
    follower.attach(0, channel, f"{epoch}:3", got.append)
    assert got and got[0].error is None and got[0].last_serial == f"{epoch}:5"
    assert lost == []
    assert fanned == [(2, 2), (3, 3), (4, 4), (5, 5)]  # from the lowest subscriber on, in order
    assert follower.streams[channel].cursor == 5


def test_a_subscriber_in_another_epoch_still_gets_90003() -> None:
    services, _ = cluster()
    channel = next(f"ch{i}" for i in range(100) if services["fe-a1"].home_of(f"ch{i}") == "fe-a1")
    services["fe-a1"].publish(0, pub(channel, 0, 0), lambda s, e: None)
    follower = services["fe-b1"]
    lost: list[str] = []
    follower._lost = lambda now, ch, last, presence, why: lost.append(last)
    follower.local_serials = lambda ch: ["gone-epoch:7"]
    follower.attach(0, channel, None, lambda res: None)
    assert len(lost) == 1


def test_a_frontend_alone_in_its_map_takes_no_home_from_its_own_copy() -> None:
    # Chaos seed 591600106 (t 65.1 s): during a zone-a partition fe-b1 declared a live fe-b2 dead
    # (the machine at load 20 starved gossip), found itself alone in its map, and made itself home
    # of chaos:0 from its own replica at seq 285 while fe-b2, the real home, had ACKed 495: a stale
    # home beside the real one. Alone, with the other zone known, it could acknowledge nothing
    # anyway; and its copy may be stale, since the home may be merely out of its sight. It waits.
    services, clock = cluster()
    channel = next(f"ch{i}" for i in range(100) if services["fe-a1"].home_of(f"ch{i}") == "fe-a1")
    acked: list[list[str] | None] = []
    services["fe-a1"].publish(0, pub(channel, 0, 1), lambda s, e: acked.append(s))
    assert acked and acked[0] is not None
    lone = services["fe-b1"]
    assert channel in lone.replicas  # the home's copy lives in the other zone
    alone = ClusterView(
        {n: Peer(node_id=n, role="frontend", zone=z, alive=n == "fe-b1") for n, z in NODES}
    )
    lone.set_view(clock[0], alone)
    got: list[Any] = []
    lone.attach(clock[0], channel, None, got.append)
    assert channel not in lone.homes, "a lone frontend made itself home from its own copy"
    assert channel in lone.replicas  # kept for when the map shows the others again
    view(services, clock[0], dead=())  # the others are back in sight
    lone.attach(clock[0], channel, None, got.append)
    assert got and got[-1].error is None and got[-1].last_serial == acked[0][0]


class HoldingBus(MemoryBus):
    """A MemoryBus that holds the ReplicaSync requests it is given until ``release``."""

    def __init__(self, cluster: dict[str, ChannelService], me: str, now: Callable[[], int]) -> None:
        super().__init__(cluster, me, now)
        self.held: list[tuple[str, Any, Any]] = []

    def request(self, peer: str, op: Any, on_reply: Any, timeout_s: float = 3.0) -> None:
        if isinstance(op, ReplicaSync):
            self.held.append((peer, op, on_reply))
            return
        super().request(peer, op, on_reply, timeout_s)

    def release(self) -> None:
        held, self.held = self.held, []
        for peer, op, on_reply in held:
            super().request(peer, op, on_reply)


def test_a_rewind_at_a_new_home_waits_for_its_entries_in_doubt() -> None:
    # ably-js's rewind after a home's kill -9 (tests/interop/test_ably_js_rewind.py): the copy's last
    # entry came past the old home's known commit point, so the new home held it in doubt until its
    # replica's sync; a rewind=5 attached meanwhile got 5 messages before it, then it as a sixth.
    services, clock = cluster()
    channel = next(f"ch{i}" for i in range(100) if services["fe-a1"].home_of(f"ch{i}") == "fe-a1")
    acked: list[list[str] | None] = []
    for n in range(6):
        services["fe-a1"].publish(0, pub(channel, n, n), lambda s, e: acked.append(s))
    serials = [s for batch in acked if batch for s in batch]
    assert len(serials) == 6
    del services["fe-a1"]  # kill -9
    for svc in services.values():
        svc.bus = HoldingBus(services, svc.node_id, lambda: clock[0])
    view(services, clock[0], dead=("fe-a1",))
    successor = next(s for s in services.values() if s.home_of(channel) == s.node_id)
    got: list[Any] = []
    successor.attach(clock[0], channel, rewind_cursor(count=3), got.append)
    assert got == []  # the entry in doubt is about to be settled: the attach waits
    bus = successor.bus
    assert isinstance(bus, HoldingBus) and bus.held
    bus.release()
    while not got and clock[0] < 3_000:
        clock[0] += 100
        for svc in services.values():
            svc.tick(clock[0])
    assert got and got[0].error is None
    assert [e.frame.wire["channelSerial"] for e in got[0].replay] == serials[-3:]
    assert got[0].last_serial == serials[-1]

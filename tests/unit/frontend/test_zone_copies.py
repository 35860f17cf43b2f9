"""A degraded home's copies inside its zone stop keeping the zone's place at the witness once a
frontend of another zone holds the log (``CopyReleased``, frontend/home_quorum.py).

Chaos seed 28473 (FAULTS=40 CLIENTS=30, t 100-114 s): fe-a2's home of chaos:firehose was degraded
for 0.1 s and copied to fe-a1; it then synced to zone b and released its grant, but fe-a1's copy
stayed marked zone-only, so fe-a1 held zone a's grant for 8 s more. When zone a was lost, the witness
refused zone b; when fe-a1 restarted, it told every node that zone a's data was lost, and zone b's
homes started new epochs: 90003 to every subscriber though nothing was missing.

Pure: three ChannelServices and a witness router in the map, a synchronous in-memory bus.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.peerops import CopyReleased, Publish, Refusal, Refused, decode
from kernel.placement import ClusterView, Peer

TTL_MS = 10_000
FRONTENDS = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))
WITNESS = ("rt-w", "w")


class MemoryBus:
    """Requests and pushes go straight to the target service, through the wire records' decode."""

    def __init__(self, services: dict[str, ChannelService], me: str, now: Callable[[], int]) -> None:
        self.services, self.me, self.now = services, me, now
        self.pushed: list[tuple[str, Any]] = []

    def request(self, peer: str, op: Any, on_reply: Any, timeout_s: float = 3.0) -> None:
        target = self.services.get(peer)
        if target is None:
            on_reply(False, Refused(Refusal.UNSENT, "no link to " + peer))
            return
        target.handle_request(self.now(), self.me, op, on_reply)

    def push(self, peer: str, op: Any) -> bool:
        self.pushed.append((peer, op))
        target = self.services.get(peer)
        if target is not None:
            target.handle_push(self.now(), self.me, decode(op.OP, op.to_args()))
        return target is not None


def view(services: dict[str, ChannelService], now: int, dead: tuple[str, ...]) -> None:
    peers = {n: Peer(node_id=n, role="frontend", zone=z, alive=n not in dead) for n, z in FRONTENDS}
    peers[WITNESS[0]] = Peer(node_id=WITNESS[0], role="router", zone=WITNESS[1], alive=True)
    v = ClusterView(peers)
    for svc in services.values():
        svc.set_view(now, v)


def cluster() -> tuple[dict[str, ChannelService], list[int]]:
    clock = [0]
    services: dict[str, ChannelService] = {}
    for node, zone in FRONTENDS:
        cfg = FrontendConfig(dev=True, zone=zone, connection_state_ttl_ms=TTL_MS, zones=("a", "b", "w"))
        svc = ChannelService(
            node,
            cfg,
            rng=random.Random(node),
            metrics=Metrics(),
            fan_out=lambda *a: None,
            lost=lambda *a: None,
            local_interest=lambda ch: True,
        )
        svc.bus = MemoryBus(services, node, lambda: clock[0])
        services[node] = svc
    view(services, 0, dead=())
    for svc in services.values():  # the witness answered each process once (no grant asked for)
        svc.grant(0, WITNESS[0], 0, False, False, None)
    return services, clock


def pub(channel: str, msg_serial: int) -> Publish:
    messages = [{"data": msg_serial}]
    return Publish(channel=channel, connection_id="c", msg_serial=msg_serial, messages=messages, envelope={})


def test_a_copy_made_while_degraded_stops_holding_the_zone_once_another_zone_holds_the_log() -> None:
    services, clock = cluster()
    home = services["fe-a1"]
    channel = next(f"ch{i}" for i in range(200) if home.home_of(f"ch{i}") == "fe-a1")
    b1 = services.pop("fe-b1")  # zone b is lost: fe-a1's home has no copy in another zone
    view(services, 0, dead=("fe-b1",))
    ask = home.witness_request(0)
    assert ask is not None and ask[1]  # it needs the witness's grant
    home.grant(0, "rt-w", 0, True, True, "a")
    acked: list[Any] = []
    home.publish(0, pub(channel, 0), lambda serials, err: acked.append((serials, err)))
    assert acked and acked[0][1] is None  # ACKed on a copy inside zone a
    copy = services["fe-a2"].replicas[channel]
    assert copy.zone_only
    assert services["fe-a2"].zone_quorum.holding_zone_only()  # fe-a2 keeps zone a's place at the witness
    ask = services["fe-a2"].witness_request(0)
    assert ask is not None and ask[2]  # it says so: the witness keeps zone a's place

    clock[0] = 1_000
    services["fe-b1"] = b1  # zone b is back: the home copies there and is no longer degraded
    view(services, clock[0], dead=())
    state = home.homes[channel]
    assert state.replica == "fe-b1" and not state.degraded
    assert services["fe-b1"].replicas[channel].last_seq == copy.last_seq
    released = CopyReleased(channel=channel, epoch=copy.epoch, last_seq=copy.last_seq)
    assert ("fe-a2", released) in home.bus.pushed
    # So its next request releases zone a's place.
    assert not services["fe-a2"].zone_quorum.holding_zone_only()
    ask = services["fe-a2"].witness_request(clock[0])
    assert ask is None or ask[1:3] == (False, False)  # neither needs nor holds: a release, if it asked


def test_a_release_of_another_epoch_or_of_a_shorter_log_keeps_the_copy_holding() -> None:
    services, _ = cluster()
    home = services["fe-a1"]
    channel = next(f"ch{i}" for i in range(200) if home.home_of(f"ch{i}") == "fe-a1")
    services.pop("fe-b1")
    view(services, 0, dead=("fe-b1",))
    home.grant(0, "rt-w", 0, True, True, "a")
    home.publish(0, pub(channel, 0), lambda serials, err: None)
    home.publish(0, pub(channel, 1), lambda serials, err: None)
    a2 = services["fe-a2"]
    copy = a2.replicas[channel]
    assert copy.zone_only and copy.last_seq == 2
    a2.handle_push(0, "fe-a1", CopyReleased(channel=channel, epoch="other", last_seq=9))
    a2.handle_push(0, "fe-a1", CopyReleased(channel=channel, epoch=copy.epoch, last_seq=1))
    assert copy.zone_only
    a2.handle_push(0, "fe-a1", CopyReleased(channel=channel, epoch=copy.epoch, last_seq=2))
    assert not copy.zone_only


FOUR = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"), ("fe-b2", "b"))


def four() -> tuple[dict[str, ChannelService], list[int]]:
    clock = [0]
    services: dict[str, ChannelService] = {}
    for node, zone in FOUR:
        cfg = FrontendConfig(dev=True, zone=zone, connection_state_ttl_ms=TTL_MS, zones=("a", "b", "w"))
        svc = ChannelService(
            node,
            cfg,
            rng=random.Random(node),
            metrics=Metrics(),
            fan_out=lambda *a: None,
            lost=lambda *a: None,
            local_interest=lambda ch: True,
        )
        svc.bus = MemoryBus(services, node, lambda: clock[0])
        services[node] = svc
    view4(services, 0, dead=())
    for svc in services.values():
        svc.grant(0, WITNESS[0], 0, False, False, None)
    return services, clock


def view4(services: dict[str, ChannelService], now: int, dead: tuple[str, ...]) -> None:
    peers = {n: Peer(node_id=n, role="frontend", zone=z, alive=n not in dead) for n, z in FOUR}
    peers[WITNESS[0]] = Peer(node_id=WITNESS[0], role="router", zone=WITNESS[1], alive=True)
    v = ClusterView(peers)
    for svc in services.values():
        svc.set_view(now, v)


def test_the_degraded_zone_stops_holding_once_a_home_of_the_other_zone_took_the_log() -> None:
    """Chaos seed 1930366970 (t 11-38 s): zone a was cut off, and zone b's homes committed under the
    witness's grant with copies on each other (fe-b1 home of chaos:1, its copy on fe-b2). At the heal
    fe-a1 took chaos:1 from those copies and synced it to its replica fe-b1; the home told only
    the frontends of its own zone (zone a) that the log is held across zones, so fe-b2's copy stayed
    marked zone-only and zone b held the witness's grant for 25 s, until zone b was lost: the
    witness then reported zone b's data lost and zone a started new epochs on every channel (90003
    within the TTL: discontinuity_within_ttl 53-94, stale_home 9). A home whose log is synced to
    another zone tells every frontend that may hold a copy of the epoch, of either zone."""
    services, clock = four()
    zone_a = {n: s for n, s in services.items() if n in ("fe-a1", "fe-a2")}
    for n in zone_a:
        services.pop(n)
    view4(services, 0, dead=("fe-a1", "fe-a2"))
    for name in ("fe-b1", "fe-b2"):
        services[name].grant(0, "rt-w", 0, True, True, "b")
    home_b = services["fe-b1"]
    channel = next(
        f"ch{i}"
        for i in range(400)
        if home_b.home_of(f"ch{i}") == "fe-b1"
        and zone_a["fe-a1"].home_of(f"ch{i}") in ("fe-a1", "fe-a2")
    )
    acked: list[Any] = []
    home_b.publish(0, pub(channel, 0), lambda serials, err: acked.append((serials, err)))
    assert acked and acked[0][1] is None  # ACKed on a copy inside zone b
    assert services["fe-b2"].replicas[channel].zone_only
    assert home_b.zone_quorum.holding_zone_only() and services["fe-b2"].zone_quorum.holding_zone_only()

    clock[0] = 1_000
    services.update(zone_a)  # the heal: the channel's home is in zone a again
    view4(services, clock[0], dead=())
    new_home = services[zone_a["fe-a1"].home_of(channel)]
    for svc in services.values():
        svc.tick(clock[0])
    new_home.publish(clock[0], pub(channel, 1), lambda serials, err: acked.append((serials, err)))
    assert acked[-1][1] is None  # the home in zone a took the log and committed on zone b's copy
    state = new_home.homes[channel]
    assert state.replica is not None and services[state.replica].config.zone == "b"
    for name in ("fe-b1", "fe-b2"):
        assert not services[name].zone_quorum.holding_zone_only(), name  # zone b's place at the witness goes
        ask = services[name].witness_request(clock[0])
        assert ask is None or ask[1:3] == (False, False)


def test_the_last_zone_only_copy_released_asks_the_witness_at_once() -> None:
    """Chaos seed 1930366970 (t 100.1 s, after the fix above): zone b's last zone-only copy was
    released 10 ms before zone b was lost, and its release to the witness waited for the next renewal
    (up to 1.7 s): the witness took zone b's restarted holders for the loss of zone b's data. The
    node now asks the witness as soon as nothing keeps its zone's place, and says so in ``/cluster``
    (``write.witness_place``) until the witness has answered the release."""
    services, clock = four()
    zone_a = {n: services.pop(n) for n in ("fe-a1", "fe-a2")}
    view4(services, 0, dead=tuple(zone_a))
    for name in ("fe-b1", "fe-b2"):
        services[name].grant(0, "rt-w", 0, True, True, "b")
    home_b = services["fe-b1"]
    channel = next(f"ch{i}" for i in range(400) if home_b.home_of(f"ch{i}") == "fe-b1")
    home_b.publish(0, pub(channel, 0), lambda serials, err: None)
    b2 = services["fe-b2"]
    poked: list[int] = []
    b2.witness_poke = lambda: poked.append(clock[0])
    assert b2.write_status()["witness_place"]

    clock[0] = 1_000
    services.update(zone_a)
    view4(services, clock[0], dead=())
    for svc in services.values():
        svc.tick(clock[0])
    new_home = services[zone_a["fe-a1"].home_of(channel)]
    new_home.publish(clock[0], pub(channel, 1), lambda serials, err: None)
    assert not b2.zone_quorum.holding_zone_only()
    assert poked, "the release waited for the next renewal"
    assert b2.write_status()["witness_place"]  # until the witness answers the release
    ask = b2.witness_request(clock[0])
    assert ask is not None and ask[1:3] == (False, False)  # a release
    b2.grant(clock[0], "rt-w", clock[0], False, False, None)
    assert not b2.write_status()["witness_place"]


def test_a_home_of_another_zone_releases_a_longer_copy_of_its_epoch() -> None:
    """Chaos seed 675552696 (t 81-143 s): at the heal fe-a1 took chaos:0 from fe-b1's copy (862);
    four in-doubt entries of zone b's demoted home reached that copy after the fetch (866), so
    fe-a1's release (862) never covered it and it kept zone b's place at the witness for 61 s. A
    home of another zone numbers every serial past its release itself: what a copy holds past it
    was never committed."""
    services, _ = four()
    services.pop("fe-a1"), services.pop("fe-a2")
    view4(services, 0, dead=("fe-a1", "fe-a2"))
    for name in ("fe-b1", "fe-b2"):
        services[name].grant(0, "rt-w", 0, True, True, "b")
    home_b = services["fe-b1"]
    channel = next(f"ch{i}" for i in range(400) if home_b.home_of(f"ch{i}") == "fe-b1")
    for n in range(3):
        home_b.publish(0, pub(channel, n), lambda serials, err: None)
    b2 = services["fe-b2"]
    copy = b2.replicas[channel]
    assert copy.zone_only and copy.last_seq == 3
    b2.handle_push(0, "fe-b1", CopyReleased(channel=channel, epoch=copy.epoch, last_seq=2))
    assert copy.zone_only  # our own zone's home: the copy's tail may be what it committed alone
    b2.handle_push(0, "fe-a1", CopyReleased(channel=channel, epoch="other", last_seq=9))
    assert copy.zone_only
    b2.handle_push(0, "fe-a1", CopyReleased(channel=channel, epoch=copy.epoch, last_seq=2))
    assert not copy.zone_only


def test_a_degraded_homes_copy_holds_the_zones_place_only_once_it_got_an_entry() -> None:
    """Chaos seed 1883094701 (t 10-75 s): zone b's degraded home of the idle firehose synced its log
    to fe-b2 and committed nothing alone; the copy was marked zone-only all the same (a sync from our
    own zone counted as holding), and as nobody acquired the firehose after the heal, zone b kept its
    place at the witness for 60 s (the chaos settle timed out). A sync now says what the log holds
    alone; each entry the degraded home sends after it marks the copy."""
    services, _ = four()
    services.pop("fe-a1"), services.pop("fe-a2")
    view4(services, 0, dead=("fe-a1", "fe-a2"))
    for name in ("fe-b1", "fe-b2"):
        services[name].grant(0, "rt-w", 0, True, True, "b")
    home_b = services["fe-b1"]
    channel = next(f"ch{i}" for i in range(400) if home_b.home_of(f"ch{i}") == "fe-b1")
    home_b.home_side._acquire(0, channel)  # acquired (an attach, say), nothing published yet
    b2 = services["fe-b2"]
    assert channel in home_b.homes and home_b.homes[channel].replica == "fe-b2"
    assert channel in b2.replicas and not b2.replicas[channel].zone_only
    assert not b2.zone_quorum.holding_zone_only()  # nothing lives in zone b alone
    home_b.publish(0, pub(channel, 0), lambda serials, err: None)
    assert b2.replicas[channel].zone_only  # an entry committed on our copy alone


def test_a_sync_that_carries_entries_the_degraded_home_will_commit_marks_the_copy() -> None:
    """The other half of the rule above: entries pending at the home travel in a sync and are
    committed when it is answered, so such a sync marks the copy at once."""
    services, _ = four()
    services.pop("fe-a1"), services.pop("fe-a2")
    view4(services, 0, dead=("fe-a1", "fe-a2"))
    for name in ("fe-b1", "fe-b2"):
        services[name].grant(0, "rt-w", 0, True, True, "b")
    home_b = services["fe-b1"]
    channel = next(f"ch{i}" for i in range(400) if home_b.home_of(f"ch{i}") == "fe-b1")
    home_b.home_side._acquire(0, channel)
    b2 = services["fe-b2"]
    assert not b2.replicas[channel].zone_only
    bus = home_b.bus
    real_request = bus.request
    bus.request = lambda peer, op, on_reply, timeout_s=3.0: None  # the entry's Replicate is lost
    home_b.publish(0, pub(channel, 0), lambda serials, err: None)
    state = home_b.homes[channel]
    assert state.pending and state.committed == 0 and not b2.replicas[channel].zone_only
    bus.request = real_request
    home_b.home_side.sync_replica(0, channel, state)  # the whole log, the pending entry with it
    assert state.committed == 1 and b2.replicas[channel].zone_only

"""A frontend rejoining after a false isolation starts no new epoch while the home is merely not
yet back in its map (chaos seed 1516076113, issue 18).

Four in-memory frontends over a synchronous bus that can cut one node off; time is a number.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.peerops import Publish, Refusal, Refused
from kernel.placement import ClusterView, Peer

NODES = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"), ("fe-b2", "b"))


class CutBus:
    """In-memory bus; nothing crosses between ``cut`` and the others."""

    def __init__(
        self, cluster: dict[str, ChannelService], me: str, now: Callable[[], int], cut: set[str]
    ) -> None:
        self.cluster, self.me, self.now, self.cut = cluster, me, now, cut

    def _reach(self, peer: str) -> ChannelService | None:
        if (peer in self.cut) != (self.me in self.cut):
            return None
        return self.cluster.get(peer)

    def request(self, peer: str, op: Any, on_reply: Any, timeout_s: float = 3.0) -> None:
        target = self._reach(peer)
        if target is None:
            on_reply(False, Refused(Refusal.UNSENT, "no link to " + peer))
            return
        target.handle_request(self.now(), self.me, op, on_reply)

    def push(self, peer: str, op: Any) -> bool:
        target = self._reach(peer)
        if target is not None:
            target.handle_push(self.now(), self.me, op)
        return target is not None


def seen_by(alive: set[str]) -> ClusterView:
    return ClusterView({n: Peer(node_id=n, role="frontend", zone=z, alive=n in alive) for n, z in NODES})


def pub(channel: str, msg_serial: int) -> Publish:
    return Publish(channel=channel, connection_id="conn", msg_serial=msg_serial,
                   messages=[{"name": "n", "data": msg_serial}], envelope={})  # fmt: skip


EVERYONE = {n for n, _ in NODES}


def partitioned_home() -> tuple[dict[str, ChannelService], list[int], set[str], str, str]:
    """fe-b2, home of a channel (replica fe-a1), is cut off alone; fe-a1 takes the home over from
    its copy (1) and ACKs 2..4. Returns the services, the clock, the cut, the channel, its epoch."""
    clock, cut = [0], set[str]()
    services: dict[str, ChannelService] = {}
    for node, zone in NODES:
        svc = ChannelService(
            node, FrontendConfig(dev=True, zone=zone), rng=random.Random(node), metrics=Metrics(),
            fan_out=lambda *a: None, lost=lambda *a: None, local_interest=lambda ch: True,
        )  # fmt: skip
        svc.bus = CutBus(services, node, lambda: clock[0], cut)
        services[node] = svc
    for svc in services.values():
        svc.set_view(0, seen_by(EVERYONE))
    b2, a1 = services["fe-b2"], services["fe-a1"]
    channel = next(
        f"ch{i}" for i in range(200)
        if b2.home_of(f"ch{i}") == "fe-b2" and b2.placement.channel_replica(f"ch{i}") == "fe-a1"
    )  # fmt: skip
    acked: list[list[str] | None] = []
    b2.publish(0, pub(channel, 0), lambda s, e: acked.append(s))
    assert acked and acked[-1] is not None
    epoch = acked[-1][0].rpartition(":")[0]
    cut.add("fe-b2")
    clock[0] = 5_000
    b2.set_view(clock[0], seen_by({"fe-b2"}))
    for name in EVERYONE - {"fe-b2"}:
        services[name].set_view(clock[0], seen_by(EVERYONE - {"fe-b2"}))
    assert a1.home_of(channel) == "fe-a1"
    for n in range(1, 4):
        a1.publish(clock[0], pub(channel, n), lambda s, e: acked.append(s))
    assert acked[-1] is not None and acked[-1][-1] == f"{epoch}:4", acked
    return services, clock, cut, channel, epoch


def test_a_rejoining_frontend_starts_no_new_epoch_while_the_home_is_not_yet_in_its_map() -> None:
    # Chaos seed 1516076113 (t 41.3-48.0 s): fe-b2, home of chaos:2, was partitioned alone; fe-a1
    # took the home over from its replica (435) and went on to 491. At the heal fe-b2's map re-admitted
    # fe-a2 first (fe-a1 and fe-b1, which held 491, 65 ms later): a stream showed it the epoch had
    # gone past its copy (superseded), fe-a2 had no copy, and it started a new epoch (source=lost);
    # the newer epoch then won over fe-a1's log: 90003 for every subscriber of chaos:2.
    services, clock, cut, channel, epoch = partitioned_home()
    b2 = services["fe-b2"]
    # The cut heals. The others see fe-b2 again at once; fe-b2's map re-admits fe-a2 first.
    cut.clear()
    clock[0] = 12_000
    for name in EVERYONE - {"fe-b2"}:
        services[name].set_view(clock[0], seen_by(EVERYONE))
    b2.set_view(clock[0], seen_by({"fe-b2", "fe-a2"}))
    got: list[Any] = []
    b2.attach(clock[0], channel, f"{epoch}:4", got.append)  # a subscriber resumes at fe-a1's serial
    new_epochs = [h.log.epoch for h in b2.homes.values() if h.log.epoch != epoch]
    new_epochs += [c.epoch for c in b2.replicas.values() if c.epoch != epoch]
    assert not new_epochs, "fe-b2 started a new epoch while fe-a1, holding the channel, was live"

    clock[0] = 12_100  # the rest of the map follows
    b2.set_view(clock[0], seen_by(EVERYONE))
    got.clear()
    b2.attach(clock[0], channel, f"{epoch}:4", got.append)
    assert got and got[-1].error is None and got[-1].last_serial == f"{epoch}:4"


def test_a_rejoining_frontend_takes_no_home_from_its_stale_copy_while_the_home_is_not_yet_in_its_map() -> (
    None
):
    # The same heal, when fe-b2 sees fe-a2 again before anyone shows it the epoch went on: it demoted
    # its home, asked fe-a2 alone for copies, took the home from its own copy (1) and numbered 2
    # again, which fe-a1 ACKed while fe-b2 was cut off (split brain). Not seen in a chaos run yet
    # (in seed 1516076113 a stream's serial reached fe-b2 first and made the copy superseded).
    services, clock, cut, channel, epoch = partitioned_home()
    b2 = services["fe-b2"]
    cut.clear()
    clock[0] = 12_000
    b2.set_view(clock[0], seen_by({"fe-b2", "fe-a2"}))
    acked: list[Any] = []
    b2.publish(clock[0], pub(channel, 9), lambda s, e: acked.append(s))
    assert not acked or acked[-1] is None or acked[-1][-1] not in {f"{epoch}:{n}" for n in range(1, 5)}, acked
    clock[0] = 12_100  # every map shows everyone: fe-b2 continues fe-a1's log
    for svc in services.values():
        svc.set_view(clock[0], seen_by(EVERYONE))
    got: list[Any] = []
    b2.attach(clock[0], channel, f"{epoch}:4", got.append)
    assert got and got[-1].error is None and got[-1].last_serial.rpartition(":")[0] == epoch
    assert int(got[-1].last_serial.rpartition(":")[2]) >= 4


def test_a_frontend_hearing_from_one_its_map_lists_dead_starts_no_new_epoch() -> None:
    # Chaos seed 1516076113, run again with the two fixes above (t 43-44 s): fe-b2, cut off alone,
    # still listed fe-a2 alive (suspect, never dead) and fe-a1, the home meanwhile, dead. At the heal
    # fe-a1's map showed fe-b2 first: fe-a1 attached at fe-b2 past fe-b2's copy (423), 30 ms before
    # fe-b2's map re-admitted anyone. fe-b2 stepped down, asked fe-a2 alone (no copy), found its own
    # copy superseded and started a new epoch (source=lost): 90003 for every subscriber of chaos:2.
    services, clock, cut, channel, epoch = partitioned_home()
    b2 = services["fe-b2"]
    clock[0] = 7_000
    b2.set_view(clock[0], seen_by({"fe-b2", "fe-a2"}))  # fe-a2 merely suspect in fe-b2's map
    clock[0] = 12_000  # long after: no heal of fe-b2's map is recent
    cut.clear()
    for name in EVERYONE - {"fe-b2"}:  # their maps show fe-b2 again; fe-a1 re-attaches there at 4
        services[name].set_view(clock[0], seen_by(EVERYONE))
    new_epochs = [h.log.epoch for h in b2.homes.values() if h.log.epoch != epoch]
    new_epochs += [c.epoch for c in b2.replicas.values() if c.epoch != epoch]
    assert not new_epochs, "fe-b2 started a new epoch while fe-a1, holding the channel, spoke to it"
    kept = [r for r in b2.replicas.values() if r.epoch == epoch and r.last_seq == 1]
    assert kept, "fe-b2 stepped down, keeping its copy"

    clock[0] = 12_030  # fe-b2's map follows
    b2.set_view(clock[0], seen_by(EVERYONE))
    got: list[Any] = []
    b2.attach(clock[0], channel, f"{epoch}:4", got.append)
    assert got and got[-1].error is None and got[-1].last_serial == f"{epoch}:4", got

"""A blocked home (no copy can be placed, no majority of zones: frontend/home_quorum.py) and the
publishes other frontends of its zone send it.

tests/integration/cluster/test_zone_loss.py::test_a_side_without_a_majority_refuses_at_once failed
about one run in four: zone b's frontends and the witness router killed, a fresh connection on
fe-a1 published to a channel homed at fe-a2, blocked. fe-a2 appended each publish and held it
without an answer until it knew its side was the minority (the witness router declared dead by
gossip, ~3 s after the kill under load), longer than fe-a1's request timeout (3 s): fe-a1 took the
timeout for an unknown outcome, and such a publish is never NACKed (it may have been numbered), so
it and every later answer on its connection waited for the dedupe window's end instead of a prompt
50350. A blocked home now turns a publish from another frontend away as not taken in (``Refusal.
BLOCKED``, certainly not numbered): the sender retries it, and refuses it at once when it knows the
minority, or at the publish deadline, or has it numbered if a grant comes first.

Pure: three ChannelServices and a witness router in the map; a synchronous in-memory bus whose
unanswered requests fail as timed out (``Refusal.LOST``) after their timeout, like PeerBus's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from frontend.channels import ChannelService
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.peerops import Publish, Refusal, Refused
from kernel.errors import ErrorCode, ErrorInfo
from kernel.placement import ClusterView, Peer

FRONTENDS = (("fe-a1", "a"), ("fe-a2", "a"), ("fe-b1", "b"))
WITNESS = ("rt-w", "w")


class TimingOutBus:
    """Requests go straight to the target; one unanswered at ``expire(now)`` past its timeout fails
    with LOST (its outcome unknown to the sender), and a reply after that is dropped."""

    def __init__(self, services: dict[str, ChannelService], me: str, now: Callable[[], int]) -> None:
        self.services, self.me, self.now = services, me, now
        self.waiting: list[tuple[int, list[bool], Any]] = []  # (deadline, [answered], on_reply)

    def request(self, peer: str, op: Any, on_reply: Any, timeout_s: float = 3.0) -> None:
        target = self.services.get(peer)
        if target is None:
            on_reply(False, Refused(Refusal.UNSENT, "no link to " + peer))
            return
        answered = [False]

        def reply(ok: bool, result: Any) -> None:
            if not answered[0]:
                answered[0] = True
                on_reply(ok, result)

        self.waiting.append((self.now() + int(timeout_s * 1000), answered, on_reply))
        target.handle_request(self.now(), self.me, op, reply)

    def push(self, peer: str, op: Any) -> bool:
        target = self.services.get(peer)
        if target is not None:
            target.handle_push(self.now(), self.me, op)
        return target is not None

    def expire(self, now_ms: int) -> None:
        due = [(a, cb) for t, a, cb in self.waiting if t <= now_ms and not a[0]]
        self.waiting = [w for w in self.waiting if w[0] > now_ms and not w[1][0]]
        for answered, on_reply in due:
            answered[0] = True
            on_reply(False, Refused(Refusal.LOST, "request timed out"))


def set_map(services: dict[str, ChannelService], now: int, dead: tuple[str, ...]) -> None:
    peers = {n: Peer(node_id=n, role="frontend", zone=z, alive=n not in dead) for n, z in FRONTENDS}
    peers[WITNESS[0]] = Peer(node_id=WITNESS[0], role="router", zone=WITNESS[1], alive=WITNESS[0] not in dead)
    v = ClusterView(peers)
    for svc in services.values():
        svc.set_view(now, v)


def cluster() -> tuple[dict[str, ChannelService], list[int]]:
    clock = [0]
    services: dict[str, ChannelService] = {}
    for node, zone in FRONTENDS:
        cfg = FrontendConfig(dev=True, zone=zone, zones=("a", "b", "w"))
        svc = ChannelService(
            node, cfg, rng=random.Random(node), metrics=Metrics(), fan_out=lambda *a: None,
            lost=lambda *a: None, local_interest=lambda ch: True,
        )  # fmt: skip
        svc.bus = TimingOutBus(services, node, lambda: clock[0])
        services[node] = svc
    set_map(services, 0, dead=())
    for svc in services.values():  # the witness answered each process once (no grant asked for)
        svc.grant(0, WITNESS[0], 0, False, False, None)
    return services, clock


def run_until(services: dict[str, ChannelService], clock: list[int], until_ms: int) -> None:
    """Advance time 100 ms at a time: each node's timers, then its bus's timeouts."""
    while clock[0] < until_ms:
        clock[0] += 100
        for svc in services.values():
            svc.tick(clock[0])
            bus = svc.bus
            assert isinstance(bus, TimingOutBus)
            bus.expire(clock[0])


def test_a_publish_to_a_blocked_home_of_its_zone_is_refused_once_the_minority_is_known() -> None:
    services, clock = cluster()
    origin, home = services["fe-a1"], services["fe-a2"]
    channel = next(f"ch{i}" for i in range(200) if origin.home_of(f"ch{i}") == "fe-a2")
    first: list[Any] = []
    early = Publish(channel=channel, connection_id="early", msg_serial=0, messages=[{}], envelope={})
    origin.publish(0, early, lambda s, e: first.append((s, e)))
    assert first and first[0][1] is None and home.homes[channel].replica == "fe-b1"
    services.pop("fe-b1")  # zone b is lost; the witness router is still in the map
    set_map(services, 0, dead=("fe-b1",))
    answers: dict[int, tuple[list[str] | None, ErrorInfo | None, int]] = {}

    def publish(msg_serial: int) -> None:
        op = Publish(channel=channel, connection_id="fresh", msg_serial=msg_serial,
                     messages=[{"data": msg_serial}], envelope={})  # fmt: skip
        origin.publish(clock[0], op, lambda s, e: answers.setdefault(msg_serial, (s, e, clock[0])))

    publish(0)
    assert home.homes[channel].blocked and not home.minority_known(0)  # a grant may still come
    run_until(services, clock, 1_000)
    publish(1)
    assert not answers  # no copy can be placed, and neither side knows it is the minority yet
    run_until(services, clock, 3_500)  # past the request timeout: the home has not answered yet
    assert not answers

    set_map(services, clock[0], dead=("fe-b1", "rt-w"))  # the witness is gone too: zone a holds 1 of 3
    known = clock[0]
    assert origin.minority_known(known) and home.minority_known(known)
    run_until(services, clock, known + 1_500)
    for n in (0, 1):
        assert n in answers, f"publish {n} not answered {clock[0] - known} ms after the minority was known"
        serials, error, at = answers[n]
        assert serials is None and error is not None and error.code == ErrorCode.NO_ZONE_QUORUM, answers
        assert at - known <= 1_100, (n, at - known)
    assert not home.homes[channel].pending and home.homes[channel].log.last_seq == 1  # nothing numbered


def test_a_blocked_homes_own_publishes_are_refused_when_the_map_shows_the_minority() -> None:
    # The same run: fe-a2's own clients' publishes, held by its blocked home, were refused at its
    # next once-a-second sweep after the map showed rt-w dead, not when it showed it.
    services, clock = cluster()
    home = services["fe-a2"]
    channel = next(f"ch{i}" for i in range(200) if home.home_of(f"ch{i}") == "fe-a2")
    early = Publish(channel=channel, connection_id="early", msg_serial=0, messages=[{}], envelope={})
    home.publish(0, early, lambda s, e: None)
    services.pop("fe-b1")
    set_map(services, 0, dead=("fe-b1",))
    answers: list[tuple[list[str] | None, ErrorInfo | None]] = []
    own = Publish(channel=channel, connection_id="own", msg_serial=0, messages=[{}], envelope={})
    home.publish(0, own, lambda s, e: answers.append((s, e)))
    run_until(services, clock, 2_000)
    assert not answers and home.homes[channel].pending  # held: a grant may still come
    set_map(services, clock[0], dead=("fe-b1", "rt-w"))  # no tick after it
    assert answers and answers[0][0] is None and answers[0][1] is not None
    assert answers[0][1].code == ErrorCode.NO_ZONE_QUORUM and not home.homes[channel].pending

"""What a chaos run (``run.py``) is made of: the cluster's shape and timing, the channels, the clients
(``roster``) and what the faults may target (``targets_for``).

4 frontends in zones a and b (the first two the gossip seeds), 2 routers for the clients and a witness
router in zone w, with a short connection-state TTL; ``recheck.py`` judges a kept run with the same
figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.chaos import schedule
from bench.chaos.load import ClientSpec
from bench.chaos.net import ChaosNet

# The chaos cluster's timing: a short TTL so that a cut longer than it is affordable.
TTL_MS = 20_000  # the dedupe window (TTL + idle) must outlast a partition and its settling
IDLE_MS = 1_000
# Shorter than Ably's 15 s so that the faults exercise leaves and re-entries (cuts longer than it).
PRESENCE_LINGER_MS = 5_000
LONG_CUT_S = 23.0  # > TTL + idle (21 s): the server's connection state and channel retention expire
OUTBOX_LIMIT = 32  # frames queued for a transport before it is cut as a slow consumer
DRAIN_TIMEOUT_S = 6.0
CHANNELS = ("chaos:0", "chaos:1", "chaos:2")
FIREHOSE = "chaos:firehose"
FRONTENDS = (("fe-b1", "b"), ("fe-a1", "a"), ("fe-a2", "a"), ("fe-b2", "b"))  # the first two are seeds
ROUTERS = (("rt1", "a"), ("rt2", "b"))  # the clients' routers, and the router faults' targets
# rt-w alone in zone w: the zone quorum's witness (kernel/quorum.py), so that a zone loss or a zone
# partition leaves the other zone publishing (as deploy/local's rt2 in zone c). No client uses it and
# no fault targets it, so a seed's schedule is what it was before the witness.
WITNESS = ("rt-w", "w")
ZONES = ["a", "b", WITNESS[1]]  # every zone: the frontends' and the witness's votes
PIPELINE = 4  # publishes a "pub" client keeps in flight (the publisher-order check's subject)


def roster(clients: int, comet_share: float, pipeline: int = PIPELINE) -> list[ClientSpec]:
    """The clients: publishers, subscribers and both, over CHANNELS, a mix of transports and formats;
    plus ``slow`` (the slow consumer's target), ``fh-watch`` on its channel, and ``burst``."""
    comet_every = round(1 / comet_share) if comet_share > 0 else 0
    out = []
    for i in range(clients):
        comet = comet_every > 0 and i % comet_every == comet_every - 1
        transport, fmt = ("comet", "json") if comet else ("web_socket", "json" if i % 2 else "msgpack")
        role = ("pub", "sub", "both", "sub")[i % 4]
        a, b, c = (CHANNELS[(i + k) % len(CHANNELS)] for k in range(3))
        pubs = (a,) if role == "pub" else (b,) if role == "both" else ()
        subs = () if role == "pub" else (b, c) if role == "both" else (a, b)
        out.append(
            ClientSpec(
                name=f"{role}{i}",
                transport=transport,
                format=fmt,
                publishes=pubs,
                subscribes=subs,
                router=i % 2,
                pipeline=pipeline if role == "pub" else 1,
            )
        )
    fh_transport = ("comet", "json") if comet_every else ("web_socket", "json")
    out += [
        ClientSpec(name="slow", transport="web_socket", format="msgpack", subscribes=(FIREHOSE, CHANNELS[0])),
        ClientSpec(
            name="fh-watch",
            transport=fh_transport[0],
            format=fh_transport[1],
            subscribes=(FIREHOSE,),
            router=1,
        ),
        ClientSpec(name="burst", transport="web_socket", format="msgpack", bursts=(FIREHOSE,)),
    ]
    return out


def targets_for(specs: Sequence[ClientSpec], net: ChaosNet | None) -> schedule.Targets:
    names = [s.name for s in specs]
    return schedule.Targets(
        frontends=[name for name, _ in FRONTENDS],
        isolatable=["fe-b2"] if net is not None else [],
        zone_partition=net is not None,
        routers=[name for name, _ in ROUTERS],
        clients=[n for n in names if n != "burst"],
        slow=["slow"],
        long_cut=[s.name for s in specs if s.publishes and s.subscribes] or names,
        zones={z: [name for name, zone in FRONTENDS if zone == z] for z in sorted({z for _, z in FRONTENDS})},
    )
